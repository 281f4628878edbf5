package nattype

import (
	"net/netip"
	"strings"
	"testing"
)

func TestClassify(t *testing.T) {
	ap := netip.MustParseAddrPort
	ip := netip.MustParseAddr
	natted := func(m, f Behavior) *Result {
		return &Result{Local: ap("198.51.100.2:4000"), Mapped: ap("203.0.113.1:4000"), Mapping: m, Filtering: f}
	}
	public := func(f Behavior) *Result {
		return &Result{Local: ap("203.0.113.9:4000"), Mapped: ap("203.0.113.9:4000"), NoNAT: true, Mapping: EndpointIndependent, Filtering: f}
	}
	pcp := func(a string) GatewayInfo { return GatewayInfo{Protocol: "PCP", ExternalAddr: ip(a)} }
	natpmp := func(a string) GatewayInfo { return GatewayInfo{Protocol: "NAT-PMP", ExternalAddr: ip(a)} }
	tests := []struct {
		name string
		r    *Result
		gw   GatewayInfo
		want Verdict
		text string // substring of Text
	}{
		{"open", public(EndpointIndependent), GatewayInfo{}, Verdict{Code: CodeOpen}, "No NAT"},
		{"firewalled", public(AddressAndPortDependent), GatewayInfo{}, Verdict{Code: CodeFirewalled}, "firewall"},
		{"firewalled by address", public(AddressDependent), GatewayInfo{}, Verdict{Code: CodeFirewalled}, "firewall"},
		{"no NAT, filtering unknown", public(Unknown), GatewayInfo{}, Verdict{Code: CodeNoNAT}, "unknown"},
		{"no NAT wins over a gateway", public(EndpointIndependent), pcp("203.0.113.1"), Verdict{Code: CodeOpen}, "No NAT"},
		{"PCP gateway is the edge", natted(AddressAndPortDependent, AddressAndPortDependent), pcp("203.0.113.1"),
			Verdict{Code: CodeInboundViaDPF, InboundViaDPF: true}, "Inbound works through DPF (gateway speaks PCP, external address 203.0.113.1)"},
		{"NAT-PMP gateway is the edge", natted(EndpointIndependent, AddressAndPortDependent), natpmp("203.0.113.1"),
			Verdict{Code: CodeInboundViaDPF, InboundViaDPF: true}, "gateway speaks NAT-PMP, external address 203.0.113.1"},
		{"gateway behind CGNAT", natted(EndpointIndependent, AddressAndPortDependent), natpmp("100.64.0.2"),
			Verdict{Code: CodeCGNAT, CGNAT: true, DoubleNAT: true}, "arrier-grade NAT upstream: public reachability impossible over IPv4"},
		{"CGNAT top of range", natted(EndpointIndependent, AddressAndPortDependent), pcp("100.127.255.254"),
			Verdict{Code: CodeCGNAT, CGNAT: true, DoubleNAT: true}, "100.127.255.254"},
		{"CGNAT without STUN", nil, pcp("100.64.0.2"),
			Verdict{Code: CodeCGNAT, CGNAT: true, DoubleNAT: true}, "Carrier-grade NAT upstream"},
		{"just outside CGNAT is public", natted(EndpointIndependent, AddressAndPortDependent), pcp("100.128.0.1"),
			Verdict{Code: CodeGatewayMismatch}, "not the address the internet sees"},
		{"double NAT, benchmarking range", natted(EndpointIndependent, AddressAndPortDependent), pcp("198.18.0.1"),
			Verdict{Code: CodeDoubleNAT, DoubleNAT: true}, "Double NAT"},
		{"double NAT, link-local", natted(EndpointIndependent, AddressAndPortDependent), natpmp("169.254.1.1"),
			Verdict{Code: CodeDoubleNAT, DoubleNAT: true}, "169.254.1.1"},
		{"double NAT, IPv6 ULA", natted(EndpointIndependent, AddressAndPortDependent), pcp("fd00::1"),
			Verdict{Code: CodeDoubleNAT, DoubleNAT: true}, "fd00::1"},
		{"double NAT without STUN", nil, pcp("198.18.0.1"),
			Verdict{Code: CodeDoubleNAT, DoubleNAT: true}, "Double NAT"},
		{"gateway reports another public address", natted(EndpointIndependent, EndpointIndependent), pcp("192.0.2.7"),
			Verdict{Code: CodeGatewayMismatch}, "192.0.2.7"},
		{"gateway, STUN failed", nil, pcp("192.0.2.7"), Verdict{Code: CodeGatewayUnverified}, "cannot be checked"},
		{"gateway without external address", natted(EndpointIndependent, EndpointIndependent), GatewayInfo{Protocol: "PCP"},
			Verdict{Code: CodeGatewayUnverified}, "did not report"},
		{"4in6 external address equals mapped", natted(EndpointIndependent, EndpointIndependent), pcp("::ffff:203.0.113.1"),
			Verdict{Code: CodeInboundViaDPF, InboundViaDPF: true}, "203.0.113.1"},
		{"no gateway, full cone", natted(EndpointIndependent, EndpointIndependent), GatewayInfo{},
			Verdict{Code: CodeHolePunching}, "hole punching works"},
		{"no gateway, port restricted", natted(EndpointIndependent, AddressAndPortDependent), GatewayInfo{},
			Verdict{Code: CodeNoInbound}, "No port mapping gateway: inbound connections impossible"},
		{"no gateway, symmetric", natted(AddressAndPortDependent, AddressAndPortDependent), GatewayInfo{},
			Verdict{Code: CodeNoInbound}, "inbound connections impossible"},
		{"no gateway, unknown (server without RFC 5780)", natted(Unknown, Unknown), GatewayInfo{}, Verdict{Code: CodeUnknown}, "behaviour is unknown"},
		{"no gateway, filtering unknown", natted(EndpointIndependent, Unknown), GatewayInfo{}, Verdict{Code: CodeUnknown}, "RFC 5780"},
		{"host itself in CGNAT space", &Result{Local: ap("100.64.7.8:4000"), Mapped: ap("203.0.113.1:9000"),
			Mapping: AddressAndPortDependent, Filtering: AddressAndPortDependent}, GatewayInfo{},
			Verdict{Code: CodeCGNAT, CGNAT: true}, "100.64.7.8"},
		{"nothing known", nil, GatewayInfo{}, Verdict{Code: CodeUnknown}, "unknown"},
		{"result without mapped address", &Result{}, GatewayInfo{}, Verdict{Code: CodeUnknown}, "unknown"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Classify(tt.r, tt.gw)
			text := got.Text
			got.Text = ""
			if got != tt.want {
				t.Errorf("Classify = %+v, want %+v", got, tt.want)
			}
			if !strings.Contains(text, tt.text) {
				t.Errorf("Text %q does not contain %q", text, tt.text)
			}
			if strings.Count(text, ". ") > 0 || !strings.HasSuffix(text, ".") {
				t.Errorf("Text %q is not one sentence", text)
			}
		})
	}
}

func TestIsCGNAT(t *testing.T) {
	for a, want := range map[string]bool{
		"100.64.0.0":        true,
		"100.64.0.2":        true,
		"100.127.255.255":   true,
		"::ffff:100.64.1.1": true,
		"100.63.255.255":    false,
		"100.128.0.0":       false,
		"203.0.113.1":       false,
		"fd00::1":           false,
	} {
		if got := isCGNAT(netip.MustParseAddr(a)); got != want {
			t.Errorf("isCGNAT(%s) = %v, want %v", a, got, want)
		}
	}
}

func TestIsNonGlobal(t *testing.T) {
	for a, want := range map[string]bool{
		"100.64.0.2":   true,
		"127.0.0.1":    true,
		"169.254.1.1":  true,
		"0.1.2.3":      true,
		"192.0.0.9":    true,
		"198.18.0.1":   true,
		"198.19.255.1": true,
		"240.0.0.1":    true,
		"224.0.0.1":    true,
		"fd00::1":      true,
		"fe80::1":      true,
		"::":           true,
		// Documentation ranges stand for the internet in the lab.
		"192.0.2.1":    false,
		"198.51.100.1": false,
		"203.0.113.1":  false,
		"2001:db8::1":  false,
	} {
		if got := isNonGlobal(netip.MustParseAddr(a)); got != want {
			t.Errorf("isNonGlobal(%s) = %v, want %v", a, got, want)
		}
	}
	if !isNonGlobal(netip.Addr{}) {
		t.Error("zero Addr is global")
	}
}
