package natpmp

import "encoding/binary"

// Request is a NAT-PMP request (RFC 6886 sections 3.2 and 3.3).
//
// For OpPublicAddress only Op is meaningful. For OpMapUDP and OpMapTCP,
// InternalPort is the client's port, SuggestedExternalPort the external port
// it would like (0 for no preference) and Lifetime the requested lifetime in
// seconds; Lifetime 0 asks to delete the mapping, and Lifetime 0 with
// InternalPort 0 asks to delete all of the client's mappings for the protocol
// (RFC 6886 section 3.4).
type Request struct {
	Op                    uint8
	InternalPort          uint16
	SuggestedExternalPort uint16
	Lifetime              uint32
}

// ParseRequest decodes a request received by a server. Trailing bytes beyond
// the size the opcode needs are ignored.
//
// Errors, in the order they are checked:
//   - fewer than 2 bytes: ErrShort (drop);
//   - response bit set in the opcode: ErrResponse (drop);
//   - version not 0: ErrUnsupportedVersion (answer ResultUnsupportedVersion);
//   - opcode not 0, 1 or 2: ErrUnsupportedOpcode (answer
//     ResultUnsupportedOpcode);
//   - opcode 1 or 2 with fewer than 12 bytes: ErrShort (drop).
//
// With ErrUnsupportedVersion and ErrUnsupportedOpcode the returned Request
// has Op set, so the caller can build the error Response; with other errors
// it is the zero Request.
func ParseRequest(b []byte) (Request, error) {
	if len(b) < publicAddressRequestSize {
		return Request{}, ErrShort
	}
	if b[1]&ResponseBit != 0 {
		return Request{}, ErrResponse
	}
	r := Request{Op: b[1]}
	if b[0] != Version {
		return r, ErrUnsupportedVersion
	}
	switch r.Op {
	case OpPublicAddress:
		return r, nil
	case OpMapUDP, OpMapTCP:
	default:
		return r, ErrUnsupportedOpcode
	}
	if len(b) < mapRequestSize {
		return Request{}, ErrShort
	}
	// b[2:4] is reserved (RFC 6886 section 3.3) and ignored on reception.
	r.InternalPort = binary.BigEndian.Uint16(b[4:6])
	r.SuggestedExternalPort = binary.BigEndian.Uint16(b[6:8])
	r.Lifetime = binary.BigEndian.Uint32(b[8:12])
	return r, nil
}

// AppendTo appends the wire form of r to b and returns the extended slice.
// OpMapUDP and OpMapTCP produce 12 bytes; every other opcode produces the
// 2-byte form (version, opcode) used by OpPublicAddress. The response bit
// is written as given, so a caller can build hostile test input.
func (r Request) AppendTo(b []byte) []byte {
	b = append(b, Version, r.Op)
	if r.Op != OpMapUDP && r.Op != OpMapTCP {
		return b
	}
	b = append(b, 0, 0) // reserved
	b = binary.BigEndian.AppendUint16(b, r.InternalPort)
	b = binary.BigEndian.AppendUint16(b, r.SuggestedExternalPort)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}
