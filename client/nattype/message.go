package nattype

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/pion/stun/v3"
)

// CHANGE-REQUEST flags, RFC 5780 section 7.2: "A" asks the server to answer
// from its other IP address, "B" from its other port.
const (
	changeIPFlag   = 0x04
	changePortFlag = 0x02
	// changeRequestLen is the value length of CHANGE-REQUEST (32 bits).
	changeRequestLen = 4
)

// Address families of the STUN address attributes, RFC 8489 section 14.1.
const (
	familyIPv4 = 0x01
	familyIPv6 = 0x02
)

var (
	errChangeRequestLen = errors.New("CHANGE-REQUEST value is not 4 bytes")
	errAddrAttr         = errors.New("malformed address attribute")
)

var (
	_ stun.Setter = changeRequest{}
	_ stun.Getter = (*changeRequest)(nil)
)

// changeRequest is the CHANGE-REQUEST attribute (RFC 5780 section 7.2). The
// zero value asks for nothing and is not added to a message.
type changeRequest struct {
	IP, Port bool
}

// AppendTo appends the 4-byte attribute value to b.
func (c changeRequest) AppendTo(b []byte) []byte {
	var v uint32
	if c.IP {
		v |= changeIPFlag
	}
	if c.Port {
		v |= changePortFlag
	}
	return binary.BigEndian.AppendUint32(b, v)
}

// AddTo implements stun.Setter; a zero changeRequest adds nothing.
func (c changeRequest) AddTo(m *stun.Message) error {
	if c == (changeRequest{}) {
		return nil
	}
	m.Add(stun.AttrChangeRequest, c.AppendTo(nil))
	return nil
}

// parseChangeRequest decodes a CHANGE-REQUEST value. Bits other than A and
// B are ignored, as RFC 5780 section 7.2 leaves them unused.
func parseChangeRequest(v []byte) (changeRequest, error) {
	if len(v) != changeRequestLen {
		return changeRequest{}, errChangeRequestLen
	}
	f := binary.BigEndian.Uint32(v)
	return changeRequest{IP: f&changeIPFlag != 0, Port: f&changePortFlag != 0}, nil
}

// GetFrom implements stun.Getter. A message without the attribute yields
// the zero changeRequest and stun.ErrAttributeNotFound.
func (c *changeRequest) GetFrom(m *stun.Message) error {
	v, err := m.Get(stun.AttrChangeRequest)
	if err != nil {
		*c = changeRequest{}
		return err
	}
	*c, err = parseChangeRequest(v)
	return err
}

func (c changeRequest) String() string {
	switch {
	case c.IP && c.Port:
		return "change IP and port"
	case c.IP:
		return "change IP"
	case c.Port:
		return "change port"
	}
	return "no change"
}

// newRequest builds a Binding request with transaction ID id.
func newRequest(id [stun.TransactionIDSize]byte, ch changeRequest) ([]byte, error) {
	m, err := stun.Build(stun.NewTransactionIDSetter(id), stun.BindingRequest, ch, stun.Fingerprint)
	if err != nil {
		return nil, fmt.Errorf("building binding request: %w", err)
	}
	return m.Raw, nil
}

// response is what a Binding success response told us.
type response struct {
	Mapped netip.AddrPort // XOR-MAPPED-ADDRESS, else MAPPED-ADDRESS
	Other  netip.AddrPort // OTHER-ADDRESS; zero if absent
	Origin netip.AddrPort // RESPONSE-ORIGIN; zero if absent
}

// errorResponse is a Binding error response (RFC 8489 section 14.8).
type errorResponse struct {
	Code   int
	Reason string
}

func (e *errorResponse) Error() string {
	return fmt.Sprintf("server answered error %d %q", e.Code, e.Reason)
}

// decodeResponse decodes a Binding response in m (already decoded by
// pion). A success response needs a mapped address; OTHER-ADDRESS and
// RESPONSE-ORIGIN are optional but must be well formed when present. An
// error response yields *errorResponse.
func decodeResponse(m *stun.Message) (response, error) {
	if m.Type.Method != stun.MethodBinding {
		return response{}, fmt.Errorf("not a binding response: %v", m.Type)
	}
	if m.Contains(stun.AttrFingerprint) {
		if err := stun.Fingerprint.Check(m); err != nil {
			return response{}, fmt.Errorf("checking fingerprint: %w", err)
		}
	}
	switch m.Type.Class {
	case stun.ClassSuccessResponse:
	case stun.ClassErrorResponse:
		var ec stun.ErrorCodeAttribute
		if err := ec.GetFrom(m); err != nil {
			return response{}, &errorResponse{Reason: "(no ERROR-CODE)"}
		}
		return response{}, &errorResponse{Code: int(ec.Code), Reason: string(ec.Reason)}
	default:
		return response{}, fmt.Errorf("not a response: %v", m.Type)
	}
	var r response
	var err error
	if m.Contains(stun.AttrXORMappedAddress) {
		r.Mapped, err = getAddr(m, stun.AttrXORMappedAddress)
	} else {
		r.Mapped, err = getAddr(m, stun.AttrMappedAddress)
	}
	if err != nil {
		return response{}, fmt.Errorf("mapped address: %w", err)
	}
	if m.Contains(stun.AttrOtherAddress) {
		if r.Other, err = getAddr(m, stun.AttrOtherAddress); err != nil {
			return response{}, fmt.Errorf("OTHER-ADDRESS: %w", err)
		}
	}
	if m.Contains(stun.AttrResponseOrigin) {
		if r.Origin, err = getAddr(m, stun.AttrResponseOrigin); err != nil {
			return response{}, fmt.Errorf("RESPONSE-ORIGIN: %w", err)
		}
	}
	return r, nil
}

// getAddr decodes address attribute t (MAPPED-ADDRESS format, or the XOR
// form for XOR-MAPPED-ADDRESS). pion decodes the value; the length check is
// ours, because pion accepts values shorter than the family's address.
func getAddr(m *stun.Message, t stun.AttrType) (netip.AddrPort, error) {
	v, err := m.Get(t)
	if err != nil {
		return netip.AddrPort{}, err
	}
	// RFC 8489 section 14.1: 8 bits reserved, 8 bits family, 16 bits
	// port, then 32 or 128 bits of address.
	if len(v) < 4 {
		return netip.AddrPort{}, errAddrAttr
	}
	switch fam := binary.BigEndian.Uint16(v[:2]); {
	case fam == familyIPv4 && len(v) == 4+4:
	case fam == familyIPv6 && len(v) == 4+16:
	default:
		return netip.AddrPort{}, errAddrAttr
	}
	var (
		ip   []byte
		port int
	)
	if t == stun.AttrXORMappedAddress {
		var a stun.XORMappedAddress
		if err := a.GetFromAs(m, t); err != nil {
			return netip.AddrPort{}, err
		}
		ip, port = a.IP, a.Port
	} else {
		var a stun.MappedAddress
		if err := a.GetFromAs(m, t); err != nil {
			return netip.AddrPort{}, err
		}
		ip, port = a.IP, a.Port
	}
	addr, ok := netip.AddrFromSlice(ip)
	if !ok || port < 0 || port > 0xffff {
		return netip.AddrPort{}, errAddrAttr
	}
	return netip.AddrPortFrom(addr.Unmap(), uint16(port)), nil
}
