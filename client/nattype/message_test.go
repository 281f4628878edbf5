package nattype

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/pion/stun/v3"
)

// Captured from coturn 4.6.1 (turnserver -L 203.0.113.2 -L 203.0.113.3
// --alt-listening-port 3479 --stun-only) answering a client at
// 203.0.113.2:40000; see testdata/README.md.
var (
	capturedID = [stun.TransactionIDSize]byte{'d', 'p', 'f', '-', 'n', 'a', 't', 't', 'y', 'p', 'e', '1'}
	// Our Binding request, and coturn's answer from 203.0.113.2:3478.
	capturedRequest  = mustHex("000100082112a4426470662d6e6174747970653180280004b748092f")
	capturedResponse = mustHex("010100502112a4426470662d6e61747479706531" +
		"002000080001bd52ea12d540" + // XOR-MAPPED-ADDRESS 203.0.113.2:40000
		"0001000800019c40cb007102" + // MAPPED-ADDRESS 203.0.113.2:40000
		"802b000800010d96cb007102" + // RESPONSE-ORIGIN 203.0.113.2:3478
		"802c000800010d97cb007103" + // OTHER-ADDRESS 203.0.113.3:3479
		"80220014436f7475726e2d342e362e312027476f7273742780280004c4e02a8d") // SOFTWARE, FINGERPRINT
	// Our request with CHANGE-REQUEST (IP and port), and coturn's answer
	// from 203.0.113.3:3479 (it sends no FINGERPRINT here).
	capturedChangeRequest  = mustHex("000100102112a4426470662d6e617474797065310003000400000006802800043e15a78f")
	capturedChangeResponse = mustHex("010100482112a4426470662d6e61747479706531" +
		"002000080001bd52ea12d5400001000800019c40cb007102802b000800010d97cb007103" +
		"802c000800010d97cb00710380220014436f7475726e2d342e362e312027476f72737427")
)

func mustHex(s string) []byte {
	b, err := hex.DecodeString(s)
	if err != nil {
		panic(err)
	}
	return b
}

func TestNewRequestMatchesCapture(t *testing.T) {
	for _, tt := range []struct {
		ch   changeRequest
		want []byte
	}{
		{changeRequest{}, capturedRequest},
		{changeRequest{IP: true, Port: true}, capturedChangeRequest},
	} {
		got, err := newRequest(capturedID, tt.ch)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, tt.want) {
			t.Errorf("%v: newRequest =\n%x\nwant\n%x", tt.ch, got, tt.want)
		}
	}
}

func TestChangeRequestCodec(t *testing.T) {
	tests := []struct {
		v    []byte
		want changeRequest
		err  bool
	}{
		{[]byte{0, 0, 0, 0}, changeRequest{}, false},
		{[]byte{0, 0, 0, 4}, changeRequest{IP: true}, false},
		{[]byte{0, 0, 0, 2}, changeRequest{Port: true}, false},
		{[]byte{0, 0, 0, 6}, changeRequest{IP: true, Port: true}, false},
		{[]byte{0xff, 0, 0, 0xf9}, changeRequest{}, false}, // unused bits ignored
		{[]byte{0, 0, 6}, changeRequest{}, true},
		{[]byte{0, 0, 0, 6, 0}, changeRequest{}, true},
		{nil, changeRequest{}, true},
	}
	for _, tt := range tests {
		got, err := parseChangeRequest(tt.v)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("parseChangeRequest(%x) = %+v, %v; want %+v, error %v", tt.v, got, err, tt.want, tt.err)
		}
	}
	// Through a message and back.
	for _, ch := range []changeRequest{{IP: true}, {Port: true}, {IP: true, Port: true}} {
		m, err := stun.Build(stun.BindingRequest, stun.TransactionID, ch)
		if err != nil {
			t.Fatal(err)
		}
		var got changeRequest
		if err := got.GetFrom(m); err != nil || got != ch {
			t.Errorf("GetFrom = %+v, %v; want %+v", got, err, ch)
		}
	}
	m := stun.MustBuild(stun.BindingRequest, stun.TransactionID, changeRequest{})
	if m.Contains(stun.AttrChangeRequest) {
		t.Error("zero changeRequest added an attribute")
	}
	got := changeRequest{IP: true}
	if err := got.GetFrom(m); !errors.Is(err, stun.ErrAttributeNotFound) || got != (changeRequest{}) {
		t.Errorf("GetFrom on a message without it = %+v, %v", got, err)
	}
}

func TestHandleCaptured(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name      string
		b         []byte
		from, src netip.AddrPort
		want      response
	}{
		{"plain", capturedResponse, ap("203.0.113.2:3478"), ap("203.0.113.2:3478"),
			response{Mapped: ap("203.0.113.2:40000"), Other: ap("203.0.113.3:3479"), Origin: ap("203.0.113.2:3478")}},
		{"changed IP and port", capturedChangeResponse, ap("203.0.113.3:3479"), ap("203.0.113.3:3479"),
			response{Mapped: ap("203.0.113.2:40000"), Other: ap("203.0.113.3:3479"), Origin: ap("203.0.113.3:3479")}},
		{"4in6 source", capturedResponse, ap("203.0.113.2:3478"), ap("[::ffff:203.0.113.2]:3478"),
			response{Mapped: ap("203.0.113.2:40000"), Other: ap("203.0.113.3:3479"), Origin: ap("203.0.113.2:3478")}},
	}
	for _, tt := range tests {
		tx := &transaction{id: capturedID, from: tt.from}
		got, done, err := tx.handle(tt.b, tt.src)
		if !done || err != nil || got != tt.want {
			t.Errorf("%s: handle = %+v, %v, %v; want %+v", tt.name, got, done, err, tt.want)
		}
	}
}

func TestHandleRejects(t *testing.T) {
	from := netip.MustParseAddrPort("203.0.113.2:3478")
	id := capturedID
	build := func(setters ...stun.Setter) []byte {
		t.Helper()
		m, err := stun.Build(append([]stun.Setter{stun.NewTransactionIDSetter(id)}, setters...)...)
		if err != nil {
			t.Fatal(err)
		}
		return m.Raw
	}
	mapped := &stun.XORMappedAddress{IP: netip.MustParseAddr("203.0.113.1").AsSlice(), Port: 4000}
	badFingerprint := append([]byte(nil), capturedResponse...)
	badFingerprint[len(badFingerprint)-1] ^= 1
	otherID := append([]byte(nil), capturedResponse...)
	otherID[19] ^= 1
	// OTHER-ADDRESS cut to a 7-byte value (length field and padding).
	shortOther := build(stun.BindingSuccess, mapped, stun.RawAttribute{Type: stun.AttrOtherAddress, Value: []byte{0, 1, 0x0d, 0x97, 203, 0, 113}})
	// An IPv4 MAPPED-ADDRESS carrying 16 address bytes.
	longMapped := build(stun.BindingSuccess, stun.RawAttribute{Type: stun.AttrMappedAddress, Value: make([]byte, 20)})
	tests := []struct {
		name string
		b    []byte
		src  netip.AddrPort
		done bool
		want string // substring of the error
	}{
		{"empty", nil, from, false, "not STUN"},
		{"not STUN", []byte("hello, this is not a STUN message at all"), from, false, "not STUN"},
		{"truncated", capturedResponse[:40], from, false, "ignored"},
		{"other transaction", otherID, from, false, "not ours"},
		{"wrong source", capturedResponse, netip.MustParseAddrPort("203.0.113.3:3479"), false, "from 203.0.113.3:3479"},
		{"bad fingerprint", badFingerprint, from, false, "fingerprint"},
		{"request", build(stun.BindingRequest), from, false, "not a response"},
		{"indication", build(stun.NewType(stun.MethodBinding, stun.ClassIndication)), from, false, "not a response"},
		{"other method", build(stun.NewType(stun.MethodAllocate, stun.ClassSuccessResponse), mapped), from, false, "not a binding"},
		{"no mapped address", build(stun.BindingSuccess), from, false, "mapped address"},
		{"short OTHER-ADDRESS", shortOther, from, false, "OTHER-ADDRESS"},
		{"long MAPPED-ADDRESS", longMapped, from, false, "malformed"},
		{"error response", build(stun.BindingError, stun.ErrorCodeAttribute{Code: 420, Reason: []byte("Unknown Attribute")}), from, true, "error 420"},
		{"error response without code", build(stun.BindingError), from, true, "no ERROR-CODE"},
	}
	for _, tt := range tests {
		tx := &transaction{id: id, from: from}
		_, done, err := tx.handle(tt.b, tt.src)
		if done != tt.done || err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: handle = done %v, %v; want done %v, error containing %q", tt.name, done, err, tt.done, tt.want)
		}
		if !done && !errors.Is(err, errIgnored) {
			t.Errorf("%s: not done but error %v is not errIgnored", tt.name, err)
		}
	}
}

func TestHandleFallsBackToMappedAddress(t *testing.T) {
	from := netip.MustParseAddrPort("[2001:db8::1]:3478")
	m := stun.MustBuild(stun.NewTransactionIDSetter(capturedID), stun.BindingSuccess,
		&stun.MappedAddress{IP: netip.MustParseAddr("2001:db8::2").AsSlice(), Port: 5000}, stun.Fingerprint)
	tx := &transaction{id: capturedID, from: from}
	r, done, err := tx.handle(m.Raw, from)
	if !done || err != nil || r.Mapped != netip.MustParseAddrPort("[2001:db8::2]:5000") || r.Other.IsValid() {
		t.Errorf("handle = %+v, %v, %v", r, done, err)
	}
}
