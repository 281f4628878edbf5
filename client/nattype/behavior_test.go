package nattype

import (
	"net/netip"
	"testing"
	"time"
)

func TestBehaviorString(t *testing.T) {
	for b, want := range map[Behavior]string{
		Unknown:                 "Unknown",
		EndpointIndependent:     "Endpoint-Independent",
		AddressDependent:        "Address-Dependent",
		AddressAndPortDependent: "Address and Port-Dependent",
		Behavior(42):            "Unknown",
	} {
		if got := b.String(); got != want {
			t.Errorf("Behavior(%d).String() = %q, want %q", int(b), got, want)
		}
	}
}

func TestMappingBehavior(t *testing.T) {
	ap := netip.MustParseAddrPort
	var zero netip.AddrPort
	tests := []struct {
		name       string
		m1, m2, m3 netip.AddrPort
		want       Behavior
	}{
		{"same everywhere", ap("192.0.2.1:4000"), ap("192.0.2.1:4000"), zero, EndpointIndependent},
		{"same, III ignored", ap("192.0.2.1:4000"), ap("192.0.2.1:4000"), ap("192.0.2.1:9"), EndpointIndependent},
		{"4in6 equals 4", ap("192.0.2.1:4000"), ap("[::ffff:192.0.2.1]:4000"), zero, EndpointIndependent},
		{"new port per IP", ap("192.0.2.1:4000"), ap("192.0.2.1:4001"), ap("192.0.2.1:4001"), AddressDependent},
		{"new IP per IP", ap("192.0.2.1:4000"), ap("192.0.2.2:4000"), ap("192.0.2.2:4000"), AddressDependent},
		{"new port per port", ap("192.0.2.1:4000"), ap("192.0.2.1:4001"), ap("192.0.2.1:4002"), AddressAndPortDependent},
		{"III back to I", ap("192.0.2.1:4000"), ap("192.0.2.1:4001"), ap("192.0.2.1:4000"), AddressAndPortDependent},
		{"II missing", ap("192.0.2.1:4000"), zero, zero, Unknown},
		{"I missing", zero, ap("192.0.2.1:4000"), zero, Unknown},
		{"III needed but missing", ap("192.0.2.1:4000"), ap("192.0.2.1:4001"), zero, Unknown},
	}
	for _, tt := range tests {
		if got := mappingBehavior(tt.m1, tt.m2, tt.m3); got != tt.want {
			t.Errorf("%s: mappingBehavior(%v, %v, %v) = %v, want %v", tt.name, tt.m1, tt.m2, tt.m3, got, tt.want)
		}
	}
}

func TestFilteringBehavior(t *testing.T) {
	tests := []struct {
		gotII, gotIII bool
		want          Behavior
	}{
		{true, false, EndpointIndependent},
		{true, true, EndpointIndependent},
		{false, true, AddressDependent},
		{false, false, AddressAndPortDependent},
	}
	for _, tt := range tests {
		if got := filteringBehavior(tt.gotII, tt.gotIII); got != tt.want {
			t.Errorf("filteringBehavior(%v, %v) = %v, want %v", tt.gotII, tt.gotIII, got, tt.want)
		}
	}
}

func TestIsNoNAT(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		local, mapped netip.AddrPort
		want          bool
	}{
		{ap("198.51.100.2:4000"), ap("198.51.100.2:4000"), true},
		{ap("198.51.100.2:4000"), ap("[::ffff:198.51.100.2]:4000"), true},
		{ap("198.51.100.2:4000"), ap("198.51.100.2:4001"), false}, // port translated
		{ap("198.51.100.2:4000"), ap("203.0.113.1:4000"), false},
		{netip.AddrPort{}, netip.AddrPort{}, false},
	}
	for _, tt := range tests {
		if got := isNoNAT(tt.local, tt.mapped); got != tt.want {
			t.Errorf("isNoNAT(%v, %v) = %v, want %v", tt.local, tt.mapped, got, tt.want)
		}
	}
}

func TestSchedule(t *testing.T) {
	ms := time.Millisecond
	sends, end := schedule(500 * ms)
	want := []time.Duration{0, 500 * ms, 1500 * ms, 3500 * ms, 7500 * ms, 15500 * ms, 31500 * ms}
	if len(sends) != len(want) {
		t.Fatalf("sends = %v, want %v", sends, want)
	}
	for i := range want {
		if sends[i] != want[i] {
			t.Fatalf("sends = %v, want %v", sends, want)
		}
	}
	// RFC 8489 section 6.2.1: with RTO 500 ms the client gives up
	// after 39.5 s.
	if end != 39500*ms {
		t.Errorf("end = %v, want 39.5s", end)
	}
}

func TestResultString(t *testing.T) {
	ap := netip.MustParseAddrPort
	r := &Result{
		Server: ap("203.0.113.2:3478"), OtherAddr: ap("203.0.113.3:3479"),
		Local: ap("198.51.100.2:4000"), Mapped: ap("203.0.113.1:4000"),
		Mapping: EndpointIndependent, Filtering: AddressAndPortDependent,
	}
	want := "server 203.0.113.2:3478 (alternate 203.0.113.3:3479): local 198.51.100.2:4000, mapped 203.0.113.1:4000; mapping Endpoint-Independent, filtering Address and Port-Dependent"
	if got := r.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	r = &Result{Server: ap("203.0.113.2:3478"), Local: ap("203.0.113.9:4000"), Mapped: ap("203.0.113.9:4000"),
		NoNAT: true, Mapping: EndpointIndependent, FilteringReason: "no OTHER-ADDRESS"}
	want = "server 203.0.113.2:3478: local 203.0.113.9:4000, mapped 203.0.113.9:4000; no NAT, filtering Unknown (no OTHER-ADDRESS)"
	if got := r.String(); got != want {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
	if got := (*Result)(nil).String(); got != "<no result>" {
		t.Errorf("nil String() = %q", got)
	}
}
