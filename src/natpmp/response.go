package natpmp

import (
	"encoding/binary"
	"net/netip"
)

// Response is a NAT-PMP response (RFC 6886 sections 3.2 and 3.3), also used
// for address-change announcements (section 3.2.1).
//
// Op is the request opcode, without ResponseBit. Epoch is the server's
// Seconds Since Start of Epoch. ExternalAddr is used only for
// OpPublicAddress and only when Result is ResultSuccess; it must be an IPv4
// address (an IPv4-mapped IPv6 address is accepted and unmapped). The port
// and Lifetime fields are used for every other opcode: InternalPort echoes
// the request, ExternalPort is the mapped port and Lifetime the granted
// lifetime in seconds.
type Response struct {
	Op           uint8
	Result       uint16
	Epoch        uint32
	ExternalAddr netip.Addr
	InternalPort uint16
	ExternalPort uint16
	Lifetime     uint32
}

// AppendTo appends the wire form of r to b and returns the extended slice.
//
// The reply is always full size, even for errors, because some clients
// reject short replies: 12 bytes for OpPublicAddress, 16 bytes for every
// other opcode (including unknown ones, answered with
// ResultUnsupportedOpcode). For OpPublicAddress the address field is zero
// when Result is not ResultSuccess or ExternalAddr is not IPv4. The opcode
// octet is ResponseBit|Op.
func (r Response) AppendTo(b []byte) []byte {
	b = append(b, Version, ResponseBit|r.Op)
	b = binary.BigEndian.AppendUint16(b, r.Result)
	b = binary.BigEndian.AppendUint32(b, r.Epoch)
	if r.Op == OpPublicAddress {
		var a [4]byte
		if ip := r.ExternalAddr.Unmap(); r.Result == ResultSuccess && ip.Is4() {
			a = ip.As4()
		}
		return append(b, a[:]...)
	}
	b = binary.BigEndian.AppendUint16(b, r.InternalPort)
	b = binary.BigEndian.AppendUint16(b, r.ExternalPort)
	return binary.BigEndian.AppendUint32(b, r.Lifetime)
}

// ParseResponse decodes a response or announcement received by a client.
// Trailing bytes are ignored.
//
// Errors: fewer than 2 bytes, or fewer than the 12 (OpPublicAddress) or 16
// (any other opcode) bytes the opcode needs: ErrShort; version not 0:
// ErrUnsupportedVersion; response bit clear: ErrNotResponse. On error the
// zero Response is returned.
//
// ExternalAddr is set (to a 4-byte address, possibly 0.0.0.0) only for a
// successful OpPublicAddress response; for an error it is the zero Addr,
// matching AppendTo, which writes zeros then.
func ParseResponse(b []byte) (Response, error) {
	if len(b) < 2 {
		return Response{}, ErrShort
	}
	if b[0] != Version {
		return Response{}, ErrUnsupportedVersion
	}
	if b[1]&ResponseBit == 0 {
		return Response{}, ErrNotResponse
	}
	r := Response{Op: b[1] &^ ResponseBit}
	need := mapResponseSize
	if r.Op == OpPublicAddress {
		need = publicAddressResponseSize
	}
	if len(b) < need {
		return Response{}, ErrShort
	}
	r.Result = binary.BigEndian.Uint16(b[2:4])
	r.Epoch = binary.BigEndian.Uint32(b[4:8])
	if r.Op == OpPublicAddress {
		if r.Result == ResultSuccess {
			r.ExternalAddr = netip.AddrFrom4([4]byte(b[8:12]))
		}
		return r, nil
	}
	r.InternalPort = binary.BigEndian.Uint16(b[8:10])
	r.ExternalPort = binary.BigEndian.Uint16(b[10:12])
	r.Lifetime = binary.BigEndian.Uint32(b[12:16])
	return r, nil
}
