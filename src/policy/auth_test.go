package policy

import (
	"net/netip"
	"testing"
)

// keyed returns r as authenticated by the key named key.
func keyed(r Request, key string) Request {
	r.Key = key
	return r
}

func TestDefaultRulesAuthenticated(t *testing.T) {
	p := &Policy{Rules: DefaultRules(), LANPrefixes: []netip.Prefix{lan}}
	tests := []struct {
		name  string
		r     Request
		allow bool
		rule  string
	}{
		{"keyed port 80", keyed(req(hostA, hostA, 80, 80, TCP), "alice"), true, "default-authenticated"},
		{"keyed port 1", keyed(req(hostA, hostA, 1, 1, UDP), "alice"), true, "default-authenticated"},
		{"keyed 8080 to 443", keyed(req(hostA, hostA, 8080, 443, TCP), "bob"), true, "default-authenticated"},
		{"unkeyed port 80", req(hostA, hostA, 80, 80, TCP), false, ""},
		{"unkeyed 8080", req(hostA, hostA, 8080, 8080, TCP), true, "default"},
		{"keyed port 0", keyed(req(hostA, hostA, 0, 0, TCP), "alice"), false, ""},
		{"keyed third party", keyed(req(hostA, hostB, 80, 80, TCP), "alice"), false, "default-authenticated"},
		{"keyed outside lan", keyed(req(outside, outside, 80, 80, TCP), "alice"), false, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := p.Check(tt.r)
			if d.Allow != tt.allow {
				t.Fatalf("Check = %+v, want allow %v", d, tt.allow)
			}
			name := ""
			if d.Rule != nil {
				name = d.Rule.Name
			}
			if name != tt.rule {
				t.Fatalf("decided by %q (%s), want %q", name, d.Reason, tt.rule)
			}
		})
	}
	// ExtRanges agrees: keyed requests may have any external port 1-65535,
	// unkeyed ones 1024-65535.
	if got := p.ExtRanges(keyed(req(hostA, hostA, 80, 0, TCP), "alice")); len(got) != 1 || got[0] != (PortRange{1, 65535}) {
		t.Fatalf("keyed ExtRanges = %v", got)
	}
	if got := p.ExtRanges(req(hostA, hostA, 8080, 0, TCP)); len(got) != 1 || got[0] != (PortRange{1024, 65535}) {
		t.Fatalf("unkeyed ExtRanges = %v", got)
	}
	if got := p.ExtRanges(req(hostA, hostA, 80, 0, TCP)); len(got) != 0 {
		t.Fatalf("unkeyed ExtRanges for internal port 80 = %v, want none", got)
	}
}

func TestRuleAuth(t *testing.T) {
	onlyAlice := Rule{Action: Allow, IntPorts: AnyPorts, ExtPorts: AnyPorts, AuthKeys: []string{"alice", "carol"}, Name: "alice"}
	anyKey := Rule{Action: Allow, IntPorts: AnyPorts, ExtPorts: PortRange{80, 80}, AuthAny: true, Name: "any-key"}
	denyKeyed := Rule{Action: Deny, IntPorts: AnyPorts, ExtPorts: AnyPorts, AuthAny: true, Name: "deny-keyed"}
	everyone := Rule{Action: Allow, IntPorts: AnyPorts, ExtPorts: PortRange{1024, 65535}, Name: "everyone"}
	tests := []struct {
		name  string
		rules []Rule
		r     Request
		allow bool
	}{
		{"named key matches", []Rule{onlyAlice}, keyed(req(hostA, hostA, 80, 80, TCP), "alice"), true},
		{"second named key matches", []Rule{onlyAlice}, keyed(req(hostA, hostA, 80, 80, TCP), "carol"), true},
		{"other key does not", []Rule{onlyAlice}, keyed(req(hostA, hostA, 80, 80, TCP), "bob"), false},
		{"no key does not", []Rule{onlyAlice}, req(hostA, hostA, 80, 80, TCP), false},
		{"any key", []Rule{anyKey}, keyed(req(hostA, hostA, 80, 80, TCP), "bob"), true},
		{"any key, no key", []Rule{anyKey}, req(hostA, hostA, 80, 80, TCP), false},
		{"rule without auth applies to keyed requests", []Rule{everyone}, keyed(req(hostA, hostA, 2000, 2000, TCP), "bob"), true},
		{"keyed deny first", []Rule{denyKeyed, everyone}, keyed(req(hostA, hostA, 2000, 2000, TCP), "bob"), false},
		{"keyed deny skipped without key", []Rule{denyKeyed, everyone}, req(hostA, hostA, 2000, 2000, TCP), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &Policy{Rules: tt.rules}
			if d := p.Check(tt.r); d.Allow != tt.allow {
				t.Fatalf("Check = %+v, want allow %v", d, tt.allow)
			}
			r := tt.r
			r.ExtPort = 0
			checkExtRangesAgainstCheck(t, p, r)
		})
	}
}
