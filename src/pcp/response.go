package pcp

import "encoding/binary"

// Response is a PCP response (RFC 6887 section 7.2) with its opcode payload
// and options.
//
// Op is the request opcode without ResponseBit. Lifetime is in seconds: the
// granted mapping lifetime on success, and on error how long the client
// should wait before retrying (see IsLongLifetimeError). Epoch is the
// server's Epoch Time (RFC 6887 section 8.5). Map is the MAP payload and is
// used only when Op is OpMap. Options are written in order after the
// payload; a server echoes the options it accepted from the request (RFC
// 6887 section 7.3), such as THIRD_PARTY, PREFER_FAILURE, FILTER and
// DESCRIPTION.
type Response struct {
	Op       uint8
	Result   uint8
	Lifetime uint32
	Epoch    uint32
	Map      MapData
	Options  []Option
}

// AppendTo appends the wire form of r to b and returns the extended slice:
// the 24-byte header (version 2, R bit and opcode, reserved, result,
// lifetime, epoch, 12 reserved zero bytes), the 36-byte MAP payload when Op
// is OpMap, then Options padded to multiples of 4. Options that would make
// the message longer than MaxMessageSize are left out, so the result is
// never longer than MaxMessageSize.
func (r Response) AppendTo(b []byte) []byte {
	start := len(b)
	b = appendResponseHeader(b, r.Op, r.Result, r.Lifetime, r.Epoch)
	if r.Op == OpMap {
		b = r.Map.appendTo(b)
	}
	return appendOptions(b, start, r.Options)
}

func appendResponseHeader(b []byte, op, result uint8, lifetime, epoch uint32) []byte {
	b = append(b, Version, ResponseBit|op, 0, result)
	b = binary.BigEndian.AppendUint32(b, lifetime)
	b = binary.BigEndian.AppendUint32(b, epoch)
	return append(b, make([]byte, 12)...)
}

// ParseResponse decodes a response received by a client. Errors, in the
// order they are checked: shorter than 24 bytes: ErrShort; version not 2:
// ErrUnsupportedVersion (Op and Result are still returned, so a client can
// see a server's UNSUPP_VERSION answer); R bit clear: ErrNotResponse; longer
// than MaxMessageSize or not a multiple of 4: ErrMalformed; MAP response
// shorter than 60 bytes: ErrShort; an option running past the end:
// ErrMalformed.
//
// Options are not checked against the opcode: a client ignores options it
// does not understand (RFC 6887 section 7.3). For opcodes other than
// ANNOUNCE and MAP the payload and options are not decoded.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < ResponseHeaderSize {
		return Response{}, ErrShort
	}
	r := Response{Op: b[1] &^ ResponseBit, Result: b[3]}
	if b[0] != Version {
		return r, ErrUnsupportedVersion
	}
	if b[1]&ResponseBit == 0 {
		return Response{}, ErrNotResponse
	}
	if len(b) > MaxMessageSize || len(b)%4 != 0 {
		return Response{}, ErrMalformed
	}
	// b[2] and b[12:24] are reserved and ignored on reception.
	r.Lifetime = binary.BigEndian.Uint32(b[4:8])
	r.Epoch = binary.BigEndian.Uint32(b[8:12])
	body := b[ResponseHeaderSize:]
	switch r.Op {
	case OpAnnounce:
	case OpMap:
		if len(body) < MapPayloadSize {
			return Response{}, ErrShort
		}
		r.Map = parseMap(body)
		body = body[MapPayloadSize:]
	default:
		return r, nil
	}
	for off := 0; off < len(body); {
		o, next, ok := nextOption(body, off)
		if !ok {
			return Response{}, ErrMalformed
		}
		r.Options = append(r.Options, o)
		off = next
	}
	return r, nil
}

// AppendErrorResponse appends to b an error response to the request req
// and returns the extended slice. It is meant for answering a *ParseError
// (or any later failure) without re-encoding a request that may not parse.
//
// RFC 6887 section 7.3 asks that an error response be a complete copy of
// the request with the header fields set for a response. So the request,
// cut to MaxMessageSize and zero-padded to a multiple of 4, is copied, and
// its first 24 bytes are replaced by a response header: version 2, R bit and
// the request's opcode, result, lifetime, epoch. When result is
// ResultUnsuppVersion, or req is shorter than 24 bytes, only the 24-byte
// header is written, since the rest of the request cannot be trusted to
// have PCP version 2's layout. A req shorter than 2 bytes is answered with
// opcode 0.
func AppendErrorResponse(b, req []byte, result uint8, lifetime, epoch uint32) []byte {
	var op uint8
	if len(req) >= 2 {
		op = req[1] &^ ResponseBit
	}
	b = appendResponseHeader(b, op, result, lifetime, epoch)
	if result == ResultUnsuppVersion || len(req) < RequestHeaderSize {
		return b
	}
	rest := req[RequestHeaderSize:min(len(req), MaxMessageSize)]
	b = append(b, rest...)
	for range padded(len(rest)) - len(rest) {
		b = append(b, 0)
	}
	return b
}
