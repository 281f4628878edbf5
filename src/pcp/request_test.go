package pcp

import (
	"bytes"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

func withByte(b []byte, i int, v byte) []byte {
	c := bytes.Clone(b)
	c[i] = v
	return c
}

// Option byte strings for the error table.
var (
	optThirdPartyV4 = []byte{0x01, 0x00, 0x00, 0x10, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 192, 168, 1, 7}
	optPreferFail   = []byte{0x02, 0x00, 0x00, 0x00}
	optFilterAll    = []byte{0x03, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	optDescHi       = []byte{0x80, 0x00, 0x00, 0x02, 'h', 'i', 0, 0}
)

func filterOpt(plen byte, addr [16]byte) []byte {
	return cat([]byte{0x03, 0x00, 0x00, 0x14, 0x00, plen, 0x00, 0x00}, addr[:])
}

var (
	v4mapped = [16]byte{10: 0xff, 11: 0xff, 12: 192, 13: 0, 14: 2, 15: 0}
	v6addr   = [16]byte{0: 0x20, 1: 0x01, 2: 0x0d, 3: 0xb8}
)

func TestParseRequestTailscaleMap(t *testing.T) {
	got, err := ParseRequest(tailscaleMapRequest)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	want := Request{
		Version:    2,
		Op:         OpMap,
		Lifetime:   7200,
		ClientAddr: netip.MustParseAddr("198.51.100.100"),
		Map: MapData{
			Nonce:        [12]byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12},
			Protocol:     17,
			InternalPort: 41641,
			ExternalAddr: netip.MustParseAddr("0.0.0.0"),
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseRequest =\n%+v\nwant\n%+v", got, want)
	}
	if enc := got.AppendTo(nil); !bytes.Equal(enc, tailscaleMapRequest) {
		t.Fatalf("AppendTo =\n% x\nwant\n% x", enc, tailscaleMapRequest)
	}
}

func TestParseRequestAnnounce(t *testing.T) {
	got, err := ParseRequest(tailscaleAnnounceRequest)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	want := Request{Version: 2, Op: OpAnnounce, ClientAddr: netip.MustParseAddr("198.51.100.2")}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("ParseRequest = %+v, want %+v", got, want)
	}
	if enc := got.AppendTo(nil); !bytes.Equal(enc, tailscaleAnnounceRequest) {
		t.Fatalf("AppendTo = % x", enc)
	}
}

func TestParseRequestOptions(t *testing.T) {
	got, err := ParseRequest(mapRequestWithOptions)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if got.ClientAddr != netip.MustParseAddr("2001:db8::10") {
		t.Errorf("ClientAddr = %v", got.ClientAddr)
	}
	if got.Map.Protocol != 6 || got.Map.InternalPort != 80 || got.Map.ExternalPort != 8080 ||
		got.Map.ExternalAddr != netip.IPv6Unspecified() {
		t.Errorf("Map = %+v", got.Map)
	}
	if got.ThirdParty != netip.MustParseAddr("2001:db8::20") {
		t.Errorf("ThirdParty = %v", got.ThirdParty)
	}
	if !got.PreferFailure {
		t.Errorf("PreferFailure = false")
	}
	wantFilters := []Filter{
		{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Port: 443},
		{Prefix: netip.MustParsePrefix("2001:db8:1::/48")},
	}
	if !reflect.DeepEqual(got.Filters, wantFilters) {
		t.Errorf("Filters = %v, want %v", got.Filters, wantFilters)
	}
	if got.Description != "web" {
		t.Errorf("Description = %q", got.Description)
	}
	codes := []uint8{}
	for _, o := range got.Options {
		codes = append(codes, o.Code)
	}
	if want := []uint8{1, 2, 3, 3, 128, 200}; !reflect.DeepEqual(codes, want) {
		t.Fatalf("option codes = %v, want %v", codes, want)
	}
	if d := got.Options[5].Data; !bytes.Equal(d, []byte{1, 2, 3, 4, 5}) {
		t.Errorf("unknown option data = % x (padding must be stripped)", d)
	}
	if enc := got.AppendTo(nil); !bytes.Equal(enc, mapRequestWithOptions) {
		t.Fatalf("AppendTo =\n% x\nwant\n% x", enc, mapRequestWithOptions)
	}
	// Parsed option data must not alias the input.
	in := bytes.Clone(mapRequestWithOptions)
	r, _ := ParseRequest(in)
	for i := range in {
		in[i] = 0xee
	}
	if r.Description != "web" || r.Options[5].Data[0] != 1 {
		t.Errorf("parsed request aliases its input")
	}
}

func TestParseRequestFilterNoFilter(t *testing.T) {
	// Prefix length 0 is "no filter": zero Prefix, address not kept.
	b := cat(tailscaleMapRequest, filterOpt(0, v4mapped))
	r, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Filters) != 1 || r.Filters[0].Prefix.IsValid() {
		t.Fatalf("Filters = %v, want one zero-prefix filter", r.Filters)
	}
	// Prefix length 96 on an IPv4-mapped address is all of IPv4.
	r, err = ParseRequest(cat(tailscaleMapRequest, filterOpt(96, v4mapped)))
	if err != nil {
		t.Fatal(err)
	}
	if want := netip.MustParsePrefix("192.0.2.0/0"); r.Filters[0].Prefix != want {
		t.Fatalf("Prefix = %v, want %v", r.Filters[0].Prefix, want)
	}
	if got := FilterOption(r.Filters[0]).Data[1]; got != 96 {
		t.Fatalf("FilterOption prefix length = %d, want 96", got)
	}
}

func TestParseRequestErrors(t *testing.T) {
	long := cat(tailscaleMapRequest, []byte{0xc8, 0x00, 0x04, 0x00}, make([]byte, 1024)) // 1088 bytes: fine
	tests := []struct {
		name   string
		in     []byte
		drop   bool
		result uint8
	}{
		{"empty", nil, true, 0},
		{"one byte", []byte{0x02}, true, 0},
		{"R bit set", withByte(tailscaleMapRequest, 1, 0x81), true, 0},
		{"R bit set, two bytes", []byte{0x02, 0x80}, true, 0},
		{"version 0", withByte(tailscaleMapRequest, 0, 0), false, ResultUnsuppVersion},
		{"version 1 short", []byte{0x01, 0x01}, false, ResultUnsuppVersion},
		{"version 3", withByte(tailscaleAnnounceRequest, 0, 3), false, ResultUnsuppVersion},
		{"version 2 two bytes", []byte{0x02, 0x01}, true, 0},
		{"version 2, 23 bytes", tailscaleAnnounceRequest[:23], true, 0},
		{"not multiple of 4", cat(tailscaleMapRequest, []byte{0}), false, ResultMalformedRequest},
		{"longer than 1100", cat(long, make([]byte, 16)), false, ResultMalformedRequest},
		{"unknown opcode", withByte(tailscaleAnnounceRequest, 1, 9), false, ResultUnsuppOpcode},
		{"PEER", cat(withByte(tailscaleMapRequest, 1, OpPeer), make([]byte, 20)), false, ResultUnsuppOpcode},
		{"MAP payload short", withByte(cat(tailscaleAnnounceRequest, make([]byte, 32)), 1, OpMap), false, ResultMalformedRequest},
		{"MAP header only", withByte(tailscaleAnnounceRequest, 1, OpMap), false, ResultMalformedRequest},
		{"option length past end", cat(tailscaleMapRequest, []byte{0xc8, 0x00, 0x00, 0x05, 1, 2, 3, 4}), false, ResultMalformedOption},
		{"option length huge", cat(tailscaleMapRequest, []byte{0xc8, 0x00, 0xff, 0xff}), false, ResultMalformedOption},
		{"unknown mandatory option", cat(tailscaleMapRequest, []byte{0x7f, 0x00, 0x00, 0x00}), false, ResultUnsuppOption},
		{"unknown mandatory option 0", cat(tailscaleMapRequest, []byte{0x00, 0x00, 0x00, 0x00}), false, ResultUnsuppOption},
		{"THIRD_PARTY with ANNOUNCE", cat(tailscaleAnnounceRequest, optThirdPartyV4), false, ResultUnsuppOption},
		{"PREFER_FAILURE with ANNOUNCE", cat(tailscaleAnnounceRequest, optPreferFail), false, ResultUnsuppOption},
		{"FILTER with ANNOUNCE", cat(tailscaleAnnounceRequest, optFilterAll), false, ResultUnsuppOption},
		{"THIRD_PARTY twice", cat(tailscaleMapRequest, optThirdPartyV4, optThirdPartyV4), false, ResultMalformedOption},
		{"THIRD_PARTY short", cat(tailscaleMapRequest, []byte{0x01, 0x00, 0x00, 0x04, 192, 168, 1, 7}), false, ResultMalformedOption},
		{"PREFER_FAILURE twice", cat(tailscaleMapRequest, optPreferFail, optPreferFail), false, ResultMalformedOption},
		{"PREFER_FAILURE with data", cat(tailscaleMapRequest, []byte{0x02, 0x00, 0x00, 0x04, 0, 0, 0, 0}), false, ResultMalformedOption},
		{"FILTER short", cat(tailscaleMapRequest, []byte{0x03, 0x00, 0x00, 0x10}, make([]byte, 16)), false, ResultMalformedOption},
		{"FILTER prefix 129", cat(tailscaleMapRequest, filterOpt(129, v6addr)), false, ResultMalformedOption},
		{"FILTER IPv4 prefix 95", cat(tailscaleMapRequest, filterOpt(95, v4mapped)), false, ResultMalformedOption},
		{"FILTER IPv4 prefix 1", cat(tailscaleMapRequest, filterOpt(1, v4mapped)), false, ResultMalformedOption},
		{"DESCRIPTION twice", cat(tailscaleMapRequest, optDescHi, optDescHi), false, ResultMalformedOption},
		{"DESCRIPTION not UTF-8", cat(tailscaleMapRequest, []byte{0x80, 0x00, 0x00, 0x02, 0xff, 0xfe, 0, 0}), false, ResultMalformedOption},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRequest(tt.in)
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("ParseRequest err = %v, want *ParseError", err)
			}
			if pe.Drop != tt.drop || (!tt.drop && pe.Result != tt.result) {
				t.Fatalf("ParseRequest = %+v, want drop=%v result=%s", pe, tt.drop, ResultString(tt.result))
			}
			if pe.Error() == "" || !strings.HasPrefix(pe.Error(), "pcp: ") {
				t.Errorf("Error() = %q", pe.Error())
			}
			if len(tt.in) >= 2 && r.Op != tt.in[1]&^ResponseBit {
				t.Errorf("partial Request Op = %d, want %d", r.Op, tt.in[1]&^ResponseBit)
			}
		})
	}
	if _, err := ParseRequest(long); err != nil {
		t.Fatalf("1088-byte request: %v", err)
	}
}

func TestParseRequestPartialOnError(t *testing.T) {
	// An option error still returns header, MAP payload and earlier options.
	b := cat(tailscaleMapRequest, optDescHi, []byte{0x7f, 0x00, 0x00, 0x00})
	r, err := ParseRequest(b)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Result != ResultUnsuppOption {
		t.Fatalf("err = %v, want UNSUPP_OPTION", err)
	}
	if r.Lifetime != 7200 || r.ClientAddr != netip.MustParseAddr("198.51.100.100") ||
		r.Map.InternalPort != 41641 || r.Map.Nonce[0] != 1 {
		t.Errorf("partial request lost fields: %+v", r)
	}
	if len(r.Options) != 1 || r.Description != "hi" {
		t.Errorf("partial request options = %+v", r.Options)
	}
	// PEER keeps its MAP-shaped first 36 bytes.
	r, _ = ParseRequest(cat(withByte(tailscaleMapRequest, 1, OpPeer), make([]byte, 20)))
	if r.Map.InternalPort != 41641 {
		t.Errorf("PEER partial Map = %+v", r.Map)
	}
	// UNSUPP_VERSION keeps the opcode.
	r, _ = ParseRequest(withByte(tailscaleMapRequest, 0, 1))
	if r.Version != 1 || r.Op != OpMap {
		t.Errorf("UNSUPP_VERSION partial = %+v", r)
	}
}

func TestOptionalOptionsIgnored(t *testing.T) {
	// DESCRIPTION is optional to process, so with ANNOUNCE it is kept but
	// not refused; the same goes for any unknown code >= 128.
	b := cat(tailscaleAnnounceRequest, optDescHi, []byte{0xff, 0x00, 0x00, 0x00})
	r, err := ParseRequest(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Options) != 2 || r.Description != "" {
		t.Fatalf("got %+v", r)
	}
	// FILTER may appear many times.
	b = cat(tailscaleMapRequest, optFilterAll, filterOpt(120, v4mapped), filterOpt(32, v6addr))
	if r, err = ParseRequest(b); err != nil || len(r.Filters) != 3 {
		t.Fatalf("three FILTERs: %v, %v", r.Filters, err)
	}
}

func TestRequestAppendToBuilders(t *testing.T) {
	r := Request{
		Op:         OpMap,
		Lifetime:   600,
		ClientAddr: netip.MustParseAddr("198.51.100.50"),
		Map:        MapData{Nonce: [12]byte{9}, Protocol: 6, InternalPort: 22, ExternalAddr: netip.IPv4Unspecified()},
		Options: []Option{
			ThirdPartyOption(netip.MustParseAddr("198.51.100.51")),
			PreferFailureOption(),
			FilterOption(Filter{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Port: 80}),
			FilterOption(Filter{}),
			DescriptionOption("ssh ☃"),
		},
	}
	enc := r.AppendTo(nil)
	if len(enc)%4 != 0 {
		t.Fatalf("length %d not a multiple of 4", len(enc))
	}
	got, err := ParseRequest(enc)
	if err != nil {
		t.Fatalf("ParseRequest: %v", err)
	}
	if got.Version != Version || got.ThirdParty != netip.MustParseAddr("198.51.100.51") || !got.PreferFailure ||
		got.Description != "ssh ☃" || len(got.Filters) != 2 || got.Filters[1] != (Filter{}) ||
		got.Filters[0].Prefix != netip.MustParsePrefix("198.51.100.0/24") {
		t.Fatalf("round trip = %+v", got)
	}
}

func TestDescriptionOptionBounded(t *testing.T) {
	s := strings.Repeat("é", 600) // 1200 bytes
	o := DescriptionOption(s)
	if len(o.Data) > MaxDescriptionLen || len(o.Data) < MaxDescriptionLen-3 {
		t.Fatalf("len = %d", len(o.Data))
	}
	if !strings.HasPrefix(s, string(o.Data)) || len(o.Data)%2 != 0 {
		t.Fatalf("cut inside a character")
	}
	r := Request{Op: OpMap, Options: []Option{o}}
	if got, err := ParseRequest(r.AppendTo(nil)); err != nil || got.Description != string(o.Data) {
		t.Fatalf("max description round trip: %v", err)
	}
}

func TestAppendToSizeLimit(t *testing.T) {
	var opts []Option
	for range 40 {
		opts = append(opts, Option{Code: 200, Data: make([]byte, 30)}) // 36 bytes each on the wire
	}
	opts = append(opts, Option{Code: 201, Data: make([]byte, 70000)}) // cannot be encoded
	for _, b := range [][]byte{
		Request{Op: OpMap, Options: opts}.AppendTo([]byte{0xee}),
		Response{Op: OpMap, Options: opts}.AppendTo([]byte{0xee}),
	} {
		msg := b[1:]
		if len(msg) > MaxMessageSize || len(msg)%4 != 0 {
			t.Fatalf("message length %d", len(msg))
		}
		// 60 + 28*36 = 1068; a 29th option would reach 1104.
		if len(msg) != 60+28*36 {
			t.Fatalf("message length %d, want %d", len(msg), 60+28*36)
		}
	}
}
