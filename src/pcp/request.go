package pcp

import (
	"encoding/binary"
	"net/netip"
	"strconv"
	"unicode/utf8"
)

// MapData is the MAP opcode payload (RFC 6887 sections 11.1 and 11.2),
// shared by requests and responses.
//
// Nonce identifies the client's mapping. Protocol is an IANA protocol number
// (6 TCP, 17 UDP, 0 all protocols). InternalPort is the client's port.
// ExternalPort and ExternalAddr are the client's suggestions in a request
// (0 and the unspecified address for no preference) and the assigned values
// in a response. ExternalAddr is a 4-byte address when the wire held an
// IPv4-mapped address; the zero Addr is written as 16 zero bytes.
type MapData struct {
	Nonce        [12]byte
	Protocol     uint8
	InternalPort uint16
	ExternalPort uint16
	ExternalAddr netip.Addr
}

// parseMap decodes a MAP payload; len(b) must be >= MapPayloadSize.
func parseMap(b []byte) MapData {
	// b[13:16] is reserved and ignored on reception.
	return MapData{
		Nonce:        [12]byte(b[0:12]),
		Protocol:     b[12],
		InternalPort: binary.BigEndian.Uint16(b[16:18]),
		ExternalPort: binary.BigEndian.Uint16(b[18:20]),
		ExternalAddr: addrAt(b[20:36]),
	}
}

func (m MapData) appendTo(b []byte) []byte {
	b = append(b, m.Nonce[:]...)
	b = append(b, m.Protocol, 0, 0, 0)
	b = binary.BigEndian.AppendUint16(b, m.InternalPort)
	b = binary.BigEndian.AppendUint16(b, m.ExternalPort)
	return appendAddr(b, m.ExternalAddr)
}

// Request is a PCP request (RFC 6887 section 7.1) with its opcode payload
// and options.
//
// Version, Op, Lifetime (seconds) and ClientAddr come from the common
// header. Map holds the MAP payload when Op is OpMap and is zero for
// OpAnnounce. Options lists every option in wire order, including unknown
// optional ones. The remaining fields are decoded from Options by
// ParseRequest for convenience; AppendTo ignores them and writes Options.
type Request struct {
	Version    uint8
	Op         uint8
	Lifetime   uint32
	ClientAddr netip.Addr

	Map MapData

	Options []Option

	// ThirdParty is the THIRD_PARTY internal address, or the zero Addr if
	// the option is absent.
	ThirdParty netip.Addr
	// PreferFailure reports whether PREFER_FAILURE was present.
	PreferFailure bool
	// Filters lists the FILTER options in order. A filter with the zero
	// Prefix cancels the filters before it (RFC 6887 section 13.3).
	Filters []Filter
	// Description is the RFC 7220 DESCRIPTION text, or "" if absent.
	Description string
}

// ParseRequest decodes a request received by a server, following the order
// of checks in RFC 6887 section 8.3. On failure it returns a *ParseError
// saying whether to drop the datagram or which result code to answer with:
//
//   - shorter than 2 bytes: Drop;
//   - R bit set: Drop;
//   - version not 2 (including NAT-PMP's 0 and version 1): UNSUPP_VERSION;
//   - shorter than 24 bytes: Drop;
//   - longer than MaxMessageSize or not a multiple of 4: MALFORMED_REQUEST;
//   - opcode not ANNOUNCE or MAP (PEER is not implemented): UNSUPP_OPCODE;
//   - MAP payload shorter than 36 bytes: MALFORMED_REQUEST;
//   - an option header or data running past the end: MALFORMED_OPTION;
//   - an option not valid for the opcode, or an unknown option in the
//     mandatory range 0-127: UNSUPP_OPTION;
//   - THIRD_PARTY, PREFER_FAILURE or DESCRIPTION given twice, a
//     THIRD_PARTY whose data is not 16 bytes, a PREFER_FAILURE with data,
//     a FILTER whose data is not 20 bytes or whose prefix length is out of
//     range (above 128; 1-95 for an IPv4-mapped address), or a DESCRIPTION
//     that is not UTF-8: MALFORMED_OPTION.
//
// Unknown options in the optional range 128-255 are kept in Options and
// otherwise ignored. THIRD_PARTY and DESCRIPTION are valid with MAP and
// PEER, PREFER_FAILURE and FILTER with MAP only; ANNOUNCE takes no known
// option.
//
// Even on error the returned Request holds what was decoded before the
// failure (header, opcode, MAP payload when present, options so far), so
// the server can echo fields in its error response. For UNSUPP_VERSION
// only Version and Op are set. For PEER the first 36 payload bytes, which
// have the MAP layout, are decoded into Map when present.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < 2 {
		return Request{}, dropError("message shorter than 2 bytes")
	}
	r := Request{Version: b[0], Op: b[1] &^ ResponseBit}
	if b[1]&ResponseBit != 0 {
		return r, dropError("R bit set in a request")
	}
	if r.Version != Version {
		return r, resultError(ResultUnsuppVersion, "version "+strconv.Itoa(int(r.Version)))
	}
	if len(b) < RequestHeaderSize {
		return r, dropError("message shorter than the 24-byte header")
	}
	// b[2:4] is reserved and ignored on reception.
	r.Lifetime = binary.BigEndian.Uint32(b[4:8])
	r.ClientAddr = addrAt(b[8:24])
	if len(b) > MaxMessageSize {
		return r, resultError(ResultMalformedRequest, "message longer than 1100 bytes")
	}
	if len(b)%4 != 0 {
		return r, resultError(ResultMalformedRequest, "message length not a multiple of 4")
	}
	body := b[RequestHeaderSize:]
	switch r.Op {
	case OpAnnounce:
		// No payload (RFC 6887 section 14.1); anything after the header
		// is options.
	case OpMap:
		if len(body) < MapPayloadSize {
			return r, resultError(ResultMalformedRequest, "MAP payload shorter than 36 bytes")
		}
		r.Map = parseMap(body)
		body = body[MapPayloadSize:]
	case OpPeer:
		if len(body) >= MapPayloadSize {
			r.Map = parseMap(body)
		}
		return r, resultError(ResultUnsuppOpcode, "PEER not implemented")
	default:
		return r, resultError(ResultUnsuppOpcode, "opcode "+strconv.Itoa(int(r.Op)))
	}
	if pe := r.parseOptions(body); pe != nil {
		return r, pe
	}
	return r, nil
}

// parseOptions decodes the options in b (a multiple of 4 bytes) into r.
func (r *Request) parseOptions(b []byte) *ParseError {
	var seen [256]bool
	for off := 0; off < len(b); {
		o, next, ok := nextOption(b, off)
		if !ok {
			return resultError(ResultMalformedOption, "option at offset "+strconv.Itoa(RequestHeaderSize+off)+" runs past the end")
		}
		off = next
		if pe := r.applyOption(o, seen[o.Code]); pe != nil {
			return pe
		}
		seen[o.Code] = true
		r.Options = append(r.Options, o)
	}
	return nil
}

// applyOption validates one option against r.Op and fills the convenience
// fields. dup reports whether the same code appeared before.
func (r *Request) applyOption(o Option, dup bool) *ParseError {
	name := optionName(o.Code)
	switch o.Code {
	case OptThirdParty:
		// RFC 6887 section 13.1: MAP and PEER, length 16, at most once.
		if r.Op != OpMap && r.Op != OpPeer {
			return resultError(ResultUnsuppOption, name+" not valid for opcode "+strconv.Itoa(int(r.Op)))
		}
		if len(o.Data) != thirdPartyLen {
			return resultError(ResultMalformedOption, name+" length "+strconv.Itoa(len(o.Data)))
		}
		if dup {
			return resultError(ResultMalformedOption, name+" appears twice")
		}
		r.ThirdParty = addrAt(o.Data)
	case OptPreferFailure:
		// RFC 6887 section 13.2: MAP only, length 0, at most once.
		if r.Op != OpMap {
			return resultError(ResultUnsuppOption, name+" not valid for opcode "+strconv.Itoa(int(r.Op)))
		}
		if len(o.Data) != preferFailureLen {
			return resultError(ResultMalformedOption, name+" length "+strconv.Itoa(len(o.Data)))
		}
		if dup {
			return resultError(ResultMalformedOption, name+" appears twice")
		}
		r.PreferFailure = true
	case OptFilter:
		// RFC 6887 section 13.3: MAP only, length 20, any number of times.
		if r.Op != OpMap {
			return resultError(ResultUnsuppOption, name+" not valid for opcode "+strconv.Itoa(int(r.Op)))
		}
		f, ok := decodeFilter(o.Data)
		if !ok {
			return resultError(ResultMalformedOption, name+" malformed")
		}
		r.Filters = append(r.Filters, f)
	case OptDescription:
		// RFC 7220 section 4: MAP and PEER, UTF-8 text, at most once.
		// Being optional to process, it would be ignored with another
		// opcode rather than refused.
		if r.Op != OpMap && r.Op != OpPeer {
			return nil
		}
		if dup {
			return resultError(ResultMalformedOption, name+" appears twice")
		}
		if !utf8.Valid(o.Data) {
			return resultError(ResultMalformedOption, name+" is not UTF-8")
		}
		r.Description = string(o.Data)
	default:
		if o.Mandatory() {
			return resultError(ResultUnsuppOption, name)
		}
	}
	return nil
}

// AppendTo appends the wire form of r to b and returns the extended slice:
// the 24-byte header, the MAP payload when Op is OpMap (for OpPeer the
// MAP-shaped 36 bytes followed by 20 zero bytes for the remote peer, which
// this package does not model), then Options, each padded to a multiple of
// 4. Version 0 is written as Version. The convenience fields (ThirdParty,
// Filters, ...) are ignored; build Options with ThirdPartyOption,
// FilterOption and the like. Options that would make the message longer
// than MaxMessageSize are left out.
func (r Request) AppendTo(b []byte) []byte {
	start := len(b)
	v := r.Version
	if v == 0 {
		v = Version
	}
	b = append(b, v, r.Op, 0, 0)
	b = binary.BigEndian.AppendUint32(b, r.Lifetime)
	b = appendAddr(b, r.ClientAddr)
	switch r.Op {
	case OpMap:
		b = r.Map.appendTo(b)
	case OpPeer:
		b = r.Map.appendTo(b)
		b = append(b, make([]byte, PeerPayloadSize-MapPayloadSize)...)
	}
	return appendOptions(b, start, r.Options)
}

func optionName(code uint8) string {
	switch code {
	case OptThirdParty:
		return "THIRD_PARTY"
	case OptPreferFailure:
		return "PREFER_FAILURE"
	case OptFilter:
		return "FILTER"
	case OptDescription:
		return "DESCRIPTION"
	}
	return "option " + strconv.Itoa(int(code))
}
