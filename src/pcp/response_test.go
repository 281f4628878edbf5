package pcp

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

func TestParseResponseMap(t *testing.T) {
	got, err := ParseResponse(mapSuccessResponse)
	if err != nil {
		t.Fatalf("ParseResponse: %v", err)
	}
	want := Response{
		Op:       OpMap,
		Lifetime: 7200,
		Epoch:    12345,
		Map: MapData{
			Nonce:        [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
			Protocol:     17,
			InternalPort: 41641,
			ExternalPort: 41641,
			ExternalAddr: netip.MustParseAddr("203.0.113.5"),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseResponse =\n%+v\nwant\n%+v", got, want)
	}
	if enc := want.AppendTo(nil); !bytes.Equal(enc, mapSuccessResponse) {
		t.Fatalf("AppendTo =\n% x\nwant\n% x", enc, mapSuccessResponse)
	}
}

func TestParseResponseAnnounce(t *testing.T) {
	got, err := ParseResponse(announceResponse)
	if err != nil {
		t.Fatal(err)
	}
	if want := (Response{Op: OpAnnounce, Epoch: 5}); !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v", got)
	}
	if enc := got.AppendTo(nil); !bytes.Equal(enc, announceResponse) {
		t.Fatalf("AppendTo = % x", enc)
	}
}

func TestResponseOptionsEcho(t *testing.T) {
	r := Response{
		Op: OpMap, Result: ResultSuccess, Lifetime: 60, Epoch: 1,
		Options: []Option{ThirdPartyOption(netip.MustParseAddr("198.51.100.9")), DescriptionOption("abcde")},
	}
	enc := r.AppendTo(nil)
	// 24 header + 36 MAP + (4+16) THIRD_PARTY + (4+8) DESCRIPTION
	if len(enc) != 24+36+20+12 {
		t.Fatalf("len = %d", len(enc))
	}
	if !bytes.Equal(enc[80:92], []byte{0x80, 0x00, 0x00, 0x05, 'a', 'b', 'c', 'd', 'e', 0, 0, 0}) {
		t.Fatalf("DESCRIPTION on the wire = % x", enc[80:92])
	}
	got, err := ParseResponse(enc)
	if err != nil {
		t.Fatal(err)
	}
	if len(got.Options) != 2 || got.Options[0].Code != OptThirdParty ||
		!bytes.Equal(got.Options[0].Data, []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 198, 51, 100, 9}) {
		t.Fatalf("options = %+v", got.Options)
	}
}

func TestParseResponseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrShort},
		{"23 bytes", announceResponse[:23], ErrShort},
		{"version 1", withByte(announceResponse, 0, 1), ErrUnsupportedVersion},
		{"request", tailscaleAnnounceRequest, ErrNotResponse},
		{"not multiple of 4", cat(announceResponse, []byte{0}), ErrMalformed},
		{"too long", cat(announceResponse, make([]byte, 1080)), ErrMalformed},
		{"MAP short", withByte(announceResponse, 1, 0x81), ErrShort},
		{"option past end", cat(announceResponse, []byte{0x01, 0x00, 0x00, 0x10}), ErrMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseResponse(tt.in); !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
		})
	}
	// A server's UNSUPP_VERSION answer in another version still shows its
	// result code.
	r, err := ParseResponse([]byte{0x01, 0x81, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0})
	if err != ErrUnsupportedVersion || r.Result != ResultUnsuppVersion || r.Op != OpMap {
		t.Fatalf("got %+v, %v", r, err)
	}
	// Options of an unknown opcode are not decoded.
	r, err = ParseResponse(cat(withByte(announceResponse, 1, 0x85), []byte{0x01, 0x00, 0x00, 0x00}))
	if err != nil || r.Op != 5 || r.Options != nil {
		t.Fatalf("unknown opcode: %+v, %v", r, err)
	}
}

func TestAppendErrorResponse(t *testing.T) {
	// A MAP request with an unknown mandatory option, answered by copying
	// the whole request under a response header (RFC 6887 section 7.3).
	req := cat(tailscaleMapRequest, []byte{0x7f, 0x00, 0x00, 0x00})
	got := AppendErrorResponse(nil, req, ResultUnsuppOption, 1800, 77)
	want := cat([]byte{
		0x02,                   // version 2
		0x81,                   // R=1, MAP
		0x00,                   // reserved
		0x05,                   // UNSUPP_OPTION
		0x00, 0x00, 0x07, 0x08, // lifetime 1800
		0x00, 0x00, 0x00, 0x4d, // epoch 77
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, // reserved
	}, req[24:])
	if !bytes.Equal(got, want) {
		t.Fatalf("AppendErrorResponse =\n% x\nwant\n% x", got, want)
	}
	// Unsupported version: header only, our version.
	got = AppendErrorResponse([]byte{0xee}, []byte{0x01, 0x01, 0, 0, 0, 0}, ResultUnsuppVersion, 1800, 1)
	if len(got) != 25 || got[1] != Version || got[2] != 0x81 || got[4] != ResultUnsuppVersion {
		t.Fatalf("UNSUPP_VERSION reply = % x", got)
	}
	// Not a multiple of 4: padded. Too long: cut to 1100.
	if got := AppendErrorResponse(nil, cat(tailscaleMapRequest, []byte{1}), ResultMalformedRequest, 0, 0); len(got) != 64 || got[60] != 1 {
		t.Fatalf("padded reply len %d", len(got))
	}
	if got := AppendErrorResponse(nil, make([]byte, 1500), ResultMalformedRequest, 0, 0); len(got) != MaxMessageSize {
		t.Fatalf("long reply len %d", len(got))
	}
	if got := AppendErrorResponse(nil, nil, ResultMalformedRequest, 0, 0); len(got) != 24 {
		t.Fatalf("empty request reply len %d", len(got))
	}
	// The error reply parses as a MAP response echoing the request fields.
	r, err := ParseResponse(AppendErrorResponse(nil, tailscaleMapRequest, ResultNoResources, 30, 5))
	if err != nil || r.Result != ResultNoResources || r.Map.InternalPort != 41641 || r.Map.Nonce[11] != 12 {
		t.Fatalf("echoed reply: %+v, %v", r, err)
	}
}

func TestResultCodes(t *testing.T) {
	long := map[uint8]bool{
		ResultUnsuppVersion: true, ResultNotAuthorized: true, ResultMalformedRequest: true,
		ResultUnsuppOpcode: true, ResultUnsuppOption: true, ResultMalformedOption: true,
		ResultUnsuppProtocol: true, ResultAddressMismatch: true, ResultExcessiveRemotePeers: true,
	}
	for code := range 256 {
		c := uint8(code)
		if got := IsLongLifetimeError(c); got != long[c] {
			t.Errorf("IsLongLifetimeError(%s) = %v", ResultString(c), got)
		}
	}
	for _, short := range []uint8{ResultNetworkFailure, ResultNoResources, ResultUserExQuota, ResultCannotProvideExternal} {
		if IsLongLifetimeError(short) {
			t.Errorf("%s should be short-lifetime", ResultString(short))
		}
	}
	names := map[uint8]string{0: "SUCCESS", 3: "MALFORMED_REQUEST", 6: "MALFORMED_OPTION", 11: "CANNOT_PROVIDE_EXTERNAL", 13: "EXCESSIVE_REMOTE_PEERS", 14: "RESULT_14", 255: "RESULT_255"}
	for c, want := range names {
		if got := ResultString(c); got != want {
			t.Errorf("ResultString(%d) = %q, want %q", c, got, want)
		}
	}
}

func TestAddrConversion(t *testing.T) {
	v4 := netip.MustParseAddr("192.0.2.1")
	w := AddrTo16(v4)
	if w != [16]byte{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 1} {
		t.Fatalf("AddrTo16 = % x", w)
	}
	if a := AddrFrom16(w); a != v4 || !a.Is4() {
		t.Fatalf("AddrFrom16 = %v", a)
	}
	v6 := netip.MustParseAddr("2001:db8::1")
	if AddrFrom16(AddrTo16(v6)) != v6 {
		t.Fatal("IPv6 round trip")
	}
	if AddrTo16(netip.Addr{}) != ([16]byte{}) || AddrFrom16([16]byte{}) != netip.IPv6Unspecified() {
		t.Fatal("zero address")
	}
}
