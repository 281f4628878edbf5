package policy

import (
	"errors"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

var (
	lan     = netip.MustParsePrefix("192.0.2.0/24")
	lan6    = netip.MustParsePrefix("2001:db8:1::/64")
	hostA   = netip.MustParseAddr("192.0.2.10")
	hostB   = netip.MustParseAddr("192.0.2.20")
	outside = netip.MustParseAddr("198.51.100.7")
	v6host  = netip.MustParseAddr("2001:db8:1::10")
)

func req(client, intAddr netip.Addr, intPort, extPort uint16, proto Proto) Request {
	return Request{Client: client, IntAddr: intAddr, IntPort: intPort, ExtPort: extPort, Proto: proto}
}

func TestDefaultRules(t *testing.T) {
	p := &Policy{Rules: DefaultRules(), LANPrefixes: []netip.Prefix{lan, lan6}}
	tests := []struct {
		name  string
		r     Request
		allow bool
	}{
		{"port 80 refused", req(hostA, hostA, 80, 80, TCP), false},
		{"8080 allowed", req(hostA, hostA, 8080, 8080, TCP), true},
		{"8080 udp allowed", req(hostA, hostA, 8080, 8080, UDP), true},
		{"8080 to ext 80 refused", req(hostA, hostA, 8080, 80, TCP), false},
		{"int 80 to ext 8080 refused", req(hostA, hostA, 80, 8080, TCP), false},
		{"int 1023 refused", req(hostA, hostA, 1023, 2000, TCP), false},
		{"int 1024 allowed", req(hostA, hostA, 1024, 2000, TCP), true},
		{"ext 1023 refused", req(hostA, hostA, 2000, 1023, TCP), false},
		{"ext 1024 allowed", req(hostA, hostA, 2000, 1024, TCP), true},
		{"65535 allowed", req(hostA, hostA, 65535, 65535, UDP), true},
		{"port 0 refused", req(hostA, hostA, 0, 0, TCP), false},
		{"ipv6 lan allowed", req(v6host, v6host, 5000, 5000, TCP), true},
		{"ipv4-mapped lan allowed", req(netip.AddrFrom16(hostA.As16()), netip.AddrFrom16(hostA.As16()), 5000, 5000, TCP), true},
		{"outside lan refused", req(outside, outside, 5000, 5000, TCP), false},
		{"third party refused", req(hostA, hostB, 5000, 5000, TCP), false},
		{"invalid addresses refused", req(netip.Addr{}, netip.Addr{}, 5000, 5000, TCP), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(tt.r)
			if d.Allow != tt.allow {
				t.Fatalf("Check(%+v) = %+v, want allow=%v", tt.r, d, tt.allow)
			}
			if p.ExtPortAllowed(tt.r) != tt.allow {
				t.Errorf("ExtPortAllowed disagrees with Check")
			}
		})
	}
}

func TestCheck(t *testing.T) {
	denyGames := Rule{Action: Deny, IntPorts: AnyPorts, ExtPorts: PortRange{3000, 3999}, Name: "no-games", Line: 3}
	allowAll := Rule{Action: Allow, IntPorts: AnyPorts, ExtPorts: AnyPorts, Line: 7}
	allowLANTCP := Rule{Action: Allow, UseLAN: true, IntPorts: AnyPorts, ExtPorts: AnyPorts, Proto: TCP}
	allowHostB := Rule{Action: Allow, IntAddrs: []netip.Prefix{netip.PrefixFrom(hostB, 32)}, IntPorts: AnyPorts, ExtPorts: AnyPorts}
	allow3rd := Rule{Action: Allow, Clients: []netip.Prefix{netip.PrefixFrom(hostA, 32)}, IntPorts: AnyPorts, ExtPorts: AnyPorts, ThirdParty: true}
	denyAll := Rule{Action: Deny, IntPorts: AnyPorts, ExtPorts: AnyPorts}
	lanOnly := []netip.Prefix{lan}

	tests := []struct {
		name       string
		rules      []Rule
		lan        []netip.Prefix
		r          Request
		allow      bool
		index      int
		reasonPart string
	}{
		{"empty policy denies", nil, lanOnly, req(hostA, hostA, 5000, 5000, TCP), false, -1, "no rule matched"},
		{"first match deny wins", []Rule{denyGames, allowAll}, nil, req(hostA, hostA, 5000, 3500, TCP), false, 0, `rule 1 "no-games" (line 3)`},
		{"first match falls through", []Rule{denyGames, allowAll}, nil, req(hostA, hostA, 5000, 4000, TCP), true, 1, "rule 2 (line 7)"},
		{"allow before deny wins", []Rule{allowAll, denyGames}, nil, req(hostA, hostA, 5000, 3500, TCP), true, 0, "allowed"},
		{"deny range edge first", []Rule{denyGames, allowAll}, nil, req(hostA, hostA, 5000, 3000, TCP), false, 0, "denied"},
		{"deny range edge last", []Rule{denyGames, allowAll}, nil, req(hostA, hostA, 5000, 3999, TCP), false, 0, "denied"},
		{"deny range edge above", []Rule{denyGames, allowAll}, nil, req(hostA, hostA, 5000, 2999, TCP), true, 1, "allowed"},
		{"proto mismatch skips rule", []Rule{allowLANTCP}, lanOnly, req(hostA, hostA, 5000, 5000, UDP), false, -1, "default"},
		{"proto match", []Rule{allowLANTCP}, lanOnly, req(hostA, hostA, 5000, 5000, TCP), true, 0, "allowed"},
		{"request any proto needs any rule", []Rule{allowLANTCP}, lanOnly, req(hostA, hostA, 5000, 5000, ProtoAny), false, -1, "default"},
		{"any rule matches any proto request", []Rule{allowAll}, nil, req(hostA, hostA, 5000, 5000, ProtoAny), true, 0, "allowed"},
		{"UseLAN without LAN prefixes fails closed", []Rule{allowLANTCP}, nil, req(hostA, hostA, 5000, 5000, TCP), false, -1, "default"},
		{"UseLAN outside", []Rule{allowLANTCP}, lanOnly, req(outside, outside, 5000, 5000, TCP), false, -1, "default"},
		{"IntAddrs match", []Rule{allowHostB}, nil, req(hostB, hostB, 5000, 5000, TCP), true, 0, "allowed"},
		{"IntAddrs no match", []Rule{allowHostB}, nil, req(hostA, hostA, 5000, 5000, TCP), false, -1, "default"},
		{"IntAddrs or LAN", []Rule{{Action: Allow, UseLAN: true, IntAddrs: []netip.Prefix{netip.MustParsePrefix("100.64.0.0/10")}, IntPorts: AnyPorts, ExtPorts: AnyPorts}}, lanOnly,
			req(netip.MustParseAddr("100.64.1.1"), netip.MustParseAddr("100.64.1.1"), 5000, 5000, TCP), true, 0, "allowed"},
		{"third party denied without flag", []Rule{allowHostB}, nil, req(hostA, hostB, 5000, 5000, TCP), false, 0, "third party"},
		{"third party flag allows", []Rule{allow3rd}, nil, req(hostA, hostB, 5000, 5000, TCP), true, 0, "allowed"},
		{"third party client mismatch", []Rule{allow3rd}, nil, req(hostB, hostA, 5000, 5000, TCP), false, -1, "default"},
		{"third party deny is final", []Rule{allowHostB, allow3rd}, nil, req(hostA, hostB, 5000, 5000, TCP), false, 0, "third_party"},
		{"deny rule ignores third party flag", []Rule{{Action: Deny, ThirdParty: true, IntPorts: AnyPorts, ExtPorts: AnyPorts}}, nil, req(hostA, hostB, 5000, 5000, TCP), false, 0, "denied by rule 1"},
		{"zero port range matches port 0 only", []Rule{{Action: Allow}}, nil, req(hostA, hostA, 0, 0, TCP), true, 0, "allowed"},
		{"zero port range is not any", []Rule{{Action: Allow}}, nil, req(hostA, hostA, 1, 1, TCP), false, -1, "default"},
		{"int port 0 edge", []Rule{{Action: Allow, IntPorts: PortRange{0, 1023}, ExtPorts: AnyPorts}}, nil, req(hostA, hostA, 0, 0, TCP), true, 0, "allowed"},
		{"int port 1023 edge", []Rule{{Action: Allow, IntPorts: PortRange{0, 1023}, ExtPorts: AnyPorts}}, nil, req(hostA, hostA, 1023, 80, TCP), true, 0, "allowed"},
		{"int port 1024 edge", []Rule{{Action: Allow, IntPorts: PortRange{0, 1023}, ExtPorts: AnyPorts}}, nil, req(hostA, hostA, 1024, 80, TCP), false, -1, "default"},
		{"port 65535 edge", []Rule{{Action: Allow, IntPorts: PortRange{65535, 65535}, ExtPorts: PortRange{65535, 65535}}}, nil, req(hostA, hostA, 65535, 65535, UDP), true, 0, "allowed"},
		{"inverted range matches nothing", []Rule{{Action: Allow, IntPorts: PortRange{2000, 1000}, ExtPorts: AnyPorts}}, nil, req(hostA, hostA, 1500, 1500, UDP), false, -1, "default"},
		{"deny all", []Rule{denyAll, allowAll}, nil, req(hostA, hostA, 5000, 5000, TCP), false, 0, "denied by rule 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Rules: tt.rules, LANPrefixes: tt.lan}
			d := p.Check(tt.r)
			if d.Allow != tt.allow || d.Index != tt.index {
				t.Fatalf("Check = %+v, want allow=%v index=%d", d, tt.allow, tt.index)
			}
			if (d.Rule == nil) != (tt.index < 0) || (d.Rule != nil && d.Rule != &p.Rules[tt.index]) {
				t.Errorf("Decision.Rule = %p, want rule %d", d.Rule, tt.index)
			}
			if !strings.Contains(d.Reason, tt.reasonPart) {
				t.Errorf("Reason = %q, want it to contain %q", d.Reason, tt.reasonPart)
			}
		})
	}
}

func TestNilPolicy(t *testing.T) {
	var p *Policy
	r := req(hostA, hostA, 5000, 5000, TCP)
	if d := p.Check(r); d.Allow || d.Rule != nil || d.Index != -1 {
		t.Errorf("nil Check = %+v", d)
	}
	if p.ExtRanges(r) != nil || p.AllowsAnyExtPort(r) {
		t.Errorf("nil policy allows some port")
	}
}

func TestExtRanges(t *testing.T) {
	all := func(a Action, ext PortRange) Rule { return Rule{Action: a, IntPorts: AnyPorts, ExtPorts: ext} }
	tests := []struct {
		name  string
		rules []Rule
		r     Request
		want  []PortRange
	}{
		{"none", nil, req(hostA, hostA, 5000, 0, TCP), nil},
		{"default rules", DefaultRules(), req(hostA, hostA, 5000, 0, TCP), []PortRange{{1024, 65535}}},
		{"default rules, int port 80", DefaultRules(), req(hostA, hostA, 80, 0, TCP), nil},
		{"default rules, third party", DefaultRules(), req(hostA, hostB, 5000, 0, TCP), nil},
		{"hole punched by earlier deny", []Rule{all(Deny, PortRange{3000, 3999}), all(Allow, PortRange{1024, 65535})}, req(hostA, hostA, 5000, 0, TCP),
			[]PortRange{{1024, 2999}, {4000, 65535}}},
		{"later deny changes nothing", []Rule{all(Allow, PortRange{1024, 65535}), all(Deny, PortRange{3000, 3999})}, req(hostA, hostA, 5000, 0, TCP),
			[]PortRange{{1024, 65535}}},
		{"adjacent allows merge", []Rule{all(Allow, PortRange{2000, 2999}), all(Allow, PortRange{3000, 3999}), all(Allow, PortRange{3500, 4500})}, req(hostA, hostA, 5000, 0, TCP),
			[]PortRange{{2000, 4500}}},
		{"edges", []Rule{all(Deny, PortRange{0, 0}), all(Deny, PortRange{65535, 65535}), all(Allow, AnyPorts)}, req(hostA, hostA, 5000, 0, TCP),
			[]PortRange{{1, 65534}}},
		{"non-matching rule ignored", []Rule{{Action: Deny, IntPorts: AnyPorts, ExtPorts: AnyPorts, Proto: UDP}, all(Allow, PortRange{1024, 2048})}, req(hostA, hostA, 5000, 0, TCP),
			[]PortRange{{1024, 2048}}},
		{"deny all stops", []Rule{all(Deny, AnyPorts), all(Allow, AnyPorts)}, req(hostA, hostA, 5000, 0, TCP), nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Rules: tt.rules, LANPrefixes: []netip.Prefix{lan}}
			got := p.ExtRanges(tt.r)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("ExtRanges = %v, want %v", got, tt.want)
			}
			if p.AllowsAnyExtPort(tt.r) != (len(tt.want) > 0) {
				t.Errorf("AllowsAnyExtPort disagrees")
			}
			checkExtRangesAgainstCheck(t, p, tt.r)
		})
	}
}

// checkExtRangesAgainstCheck verifies ExtRanges port by port against Check.
func checkExtRangesAgainstCheck(t *testing.T, p *Policy, r Request) {
	t.Helper()
	ranges := p.ExtRanges(r)
	for port := 0; port <= 65535; port++ {
		r.ExtPort = uint16(port)
		in := slices.ContainsFunc(ranges, func(x PortRange) bool { return x.Contains(uint16(port)) })
		if got := p.Check(r).Allow; got != in {
			t.Fatalf("port %d: Check allow=%v but ExtRanges %v says %v", port, got, ranges, in)
		}
	}
}

// TestExtRangesRandom compares ExtRanges with Check on random rule lists.
func TestExtRangesRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	randRange := func() PortRange {
		a, b := uint16(rng.IntN(65536)), uint16(rng.IntN(65536))
		if rng.IntN(4) == 0 {
			b = a + uint16(rng.IntN(3))
		}
		return PortRange{min(a, b), max(a, b)}
	}
	for i := 0; i < 40; i++ {
		p := &Policy{LANPrefixes: []netip.Prefix{lan}}
		for j := rng.IntN(8); j > 0; j-- {
			p.Rules = append(p.Rules, Rule{
				Action: Action(rng.IntN(2)), UseLAN: rng.IntN(2) == 0, IntPorts: AnyPorts,
				ExtPorts: randRange(), Proto: []Proto{ProtoAny, TCP, UDP}[rng.IntN(3)], ThirdParty: rng.IntN(2) == 0,
			})
		}
		r := req(hostA, []netip.Addr{hostA, hostB}[rng.IntN(2)], 5000, 0, []Proto{TCP, UDP}[rng.IntN(2)])
		checkExtRangesAgainstCheck(t, p, r)
	}
}

func TestParsePortRange(t *testing.T) {
	tests := []struct {
		in   string
		want PortRange
		err  bool
	}{
		{"any", AnyPorts, false},
		{" ANY ", AnyPorts, false},
		{"80", PortRange{80, 80}, false},
		{"0", PortRange{0, 0}, false},
		{"65535", PortRange{65535, 65535}, false},
		{"1024-65535", PortRange{1024, 65535}, false},
		{"1024 - 2048", PortRange{1024, 2048}, false},
		{"0-1023", PortRange{0, 1023}, false},
		{"65536", PortRange{}, true},
		{"-1", PortRange{}, true},
		{"+80", PortRange{}, true},
		{"2000-1000", PortRange{}, true},
		{"1-2-3", PortRange{}, true},
		{"", PortRange{}, true},
		{"http", PortRange{}, true},
		{"1024-", PortRange{}, true},
	}
	for _, tt := range tests {
		got, err := ParsePortRange(tt.in)
		if (err != nil) != tt.err || got != tt.want {
			t.Errorf("ParsePortRange(%q) = %v, %v; want %v, err=%v", tt.in, got, err, tt.want, tt.err)
		}
		if err != nil && !errors.Is(err, ErrInvalidPortRange) {
			t.Errorf("ParsePortRange(%q) error %v does not wrap ErrInvalidPortRange", tt.in, err)
		}
		if err == nil {
			back, err := ParsePortRange(got.String())
			if err != nil || back != got {
				t.Errorf("round trip of %v via %q = %v, %v", got, got.String(), back, err)
			}
		}
	}
	if (PortRange{}).Contains(1) || !(PortRange{}).Contains(0) || (PortRange{}).IsAny() {
		t.Error("zero PortRange must be port 0 only")
	}
	if AnyPorts.Len() != 65536 || (PortRange{5, 4}).Len() != 0 {
		t.Error("Len")
	}
}

func TestParseProtoAndAction(t *testing.T) {
	protos := map[string]Proto{"tcp": TCP, "UDP": UDP, "any": ProtoAny, "tcp udp": ProtoAny, "udp  tcp": ProtoAny, "both": ProtoAny, "all": ProtoAny}
	for in, want := range protos {
		if got, err := ParseRuleProto(in); err != nil || got != want {
			t.Errorf("ParseRuleProto(%q) = %v, %v", in, got, err)
		}
	}
	for _, in := range []string{"", "icmp", "tcp tcp", "6"} {
		if _, err := ParseRuleProto(in); !errors.Is(err, ErrInvalidProto) {
			t.Errorf("ParseRuleProto(%q) err = %v", in, err)
		}
	}
	if a, err := ParseAction("Allow"); err != nil || a != Allow {
		t.Errorf("ParseAction(Allow) = %v, %v", a, err)
	}
	if a, err := ParseAction("deny"); err != nil || a != Deny {
		t.Errorf("ParseAction(deny) = %v, %v", a, err)
	}
	if _, err := ParseAction("accept"); !errors.Is(err, ErrInvalidAction) {
		t.Errorf("ParseAction(accept) err = %v", err)
	}
	if TCP.String() != "tcp" || Proto(1).String() != "proto-1" || Allow.String() != "allow" {
		t.Error("String")
	}
}
