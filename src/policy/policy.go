package policy

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
)

// Rule is one line of policy. See the package documentation for when a rule
// matches a request.
type Rule struct {
	// Action is what happens to a request this rule matches first.
	Action Action

	// IntAddrs are the internal addresses (the mapping's target) the rule
	// applies to. Together with UseLAN: empty and UseLAN false means any
	// address; otherwise the address must be in one of IntAddrs or, when
	// UseLAN is set, in one of Policy.LANPrefixes.
	IntAddrs []netip.Prefix

	// UseLAN adds the policy's LANPrefixes to IntAddrs. With UseLAN set and
	// no LANPrefixes known, it adds nothing: the rule fails closed.
	UseLAN bool

	// Clients are the addresses of the hosts sending the request (differs
	// from the internal address only for PCP THIRD_PARTY). Empty means any.
	Clients []netip.Prefix

	// IntPorts and ExtPorts are the internal and external port ranges the
	// rule applies to. The zero value is port 0 only; use AnyPorts.
	IntPorts, ExtPorts PortRange

	// Proto is the protocol the rule applies to; ProtoAny matches all.
	Proto Proto

	// ThirdParty lets an Allow rule allow third-party requests, in which a
	// client asks for a mapping to another internal address. Without it a
	// third-party request that matches the rule is denied. It has no effect
	// on Deny rules.
	ThirdParty bool

	// AuthAny and AuthKeys limit the rule to requests authenticated with
	// DPF's AUTH option (see Request.Key): with AuthAny, by any key;
	// otherwise, when AuthKeys is not empty, by one of the keys so named.
	// With neither the rule applies to every request, authenticated or
	// not. An unauthenticated request never matches a rule that sets
	// either.
	AuthAny  bool
	AuthKeys []string

	// Line is the configuration line the rule came from, for messages; 0 if
	// unknown.
	Line int

	// Name is an optional name for messages.
	Name string
}

// Request is what a client asks for, as far as the policy is concerned.
// Addresses are compared after Unmap, so IPv4-mapped IPv6 addresses (as PCP
// carries IPv4) match IPv4 prefixes.
type Request struct {
	Client  netip.Addr // source address of the request
	IntAddr netip.Addr // internal address the mapping points to
	IntPort uint16     // internal port
	ExtPort uint16     // external port asked for
	Proto   Proto      // TCP or UDP; ProtoAny only matches rules whose Proto is ProtoAny
	// Key is the name of the key that authenticated the request (DPF's
	// AUTH option, checked by the protocol server), "" for an
	// unauthenticated request.
	Key string
}

// ThirdParty reports whether the request is on behalf of another host, that
// is Client != IntAddr after Unmap.
func (r Request) ThirdParty() bool { return r.Client.Unmap() != r.IntAddr.Unmap() }

// Decision is the outcome of [Policy.Check].
type Decision struct {
	// Allow reports whether the mapping may be created.
	Allow bool
	// Rule is the rule that decided (a pointer into Policy.Rules), or nil
	// when no rule matched and the request was denied by default.
	Rule *Rule
	// Index is the position of Rule in Policy.Rules, or -1 when Rule is nil.
	Index int
	// Reason is a human readable explanation naming the rule.
	Reason string
}

// Policy is an ordered rule list, denying by default. The zero value and a
// nil *Policy deny everything.
type Policy struct {
	// Rules are evaluated in order; the first match decides.
	Rules []Rule
	// LANPrefixes are the LAN interfaces' subnets, which rules with UseLAN
	// match. dpfd sets them from the interfaces' addresses and replaces the
	// Policy when they change.
	LANPrefixes []netip.Prefix
}

// Check decides r. It never returns Allow unless a rule allowed r.
func (p *Policy) Check(r Request) Decision {
	if p == nil {
		return defaultDeny()
	}
	third := r.ThirdParty()
	for i := range p.Rules {
		rule := &p.Rules[i]
		if !p.matchesExceptExt(rule, r) || !rule.ExtPorts.Contains(r.ExtPort) {
			continue
		}
		d := Decision{Rule: rule, Index: i}
		switch {
		case rule.Action != Allow:
			d.Reason = "denied by " + rule.label(i)
		case third && !rule.ThirdParty:
			d.Reason = fmt.Sprintf("denied by %s: it allows the request but not on behalf of another host (third party, client %s for %s); set third_party to allow that",
				rule.label(i), r.Client, r.IntAddr)
		default:
			d.Allow = true
			d.Reason = "allowed by " + rule.label(i)
		}
		return d
	}
	return defaultDeny()
}

func defaultDeny() Decision {
	return Decision{Index: -1, Reason: "denied by default: no rule matched"}
}

// ExtPortAllowed reports whether r, with its ExtPort, is allowed; it is
// Check(r).Allow.
func (p *Policy) ExtPortAllowed(r Request) bool { return p.Check(r).Allow }

// AllowsAnyExtPort reports whether some external port would be allowed for r
// (r.ExtPort is ignored), that is whether [Policy.ExtRanges] is not empty.
func (p *Policy) AllowsAnyExtPort(r Request) bool { return len(p.ExtRanges(r)) > 0 }

// matchesExceptExt reports whether rule matches r on everything but the
// external port.
func (p *Policy) matchesExceptExt(rule *Rule, r Request) bool {
	if rule.Proto != ProtoAny && rule.Proto != r.Proto {
		return false
	}
	if !rule.IntPorts.Contains(r.IntPort) {
		return false
	}
	if len(rule.Clients) > 0 && !inAny(rule.Clients, r.Client) {
		return false
	}
	if !rule.authMatches(r.Key) {
		return false
	}
	if len(rule.IntAddrs) == 0 && !rule.UseLAN {
		return true
	}
	return inAny(rule.IntAddrs, r.IntAddr) || (rule.UseLAN && inAny(p.LANPrefixes, r.IntAddr))
}

// authMatches reports whether a request authenticated by the key named key
// ("" for none) meets the rule's AuthAny and AuthKeys.
func (r *Rule) authMatches(key string) bool {
	if !r.AuthAny && len(r.AuthKeys) == 0 {
		return true
	}
	return key != "" && (r.AuthAny || slices.Contains(r.AuthKeys, key))
}

func inAny(prefixes []netip.Prefix, a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() {
		return false
	}
	for _, pfx := range prefixes {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// label names rule i for messages, e.g. `rule 2 "games" (line 14)`.
func (r *Rule) label(i int) string {
	s := "rule " + strconv.Itoa(i+1)
	if r.Name != "" {
		s += " " + strconv.Quote(r.Name)
	}
	if r.Line > 0 {
		s += " (line " + strconv.Itoa(r.Line) + ")"
	}
	return s
}

// DefaultRules returns the rules dpfd ships with, a new slice on every call:
//
//  1. "default-authenticated": a request authenticated with any configured
//     key (Request.Key not empty) may map any port 1-65535 of its sender's
//     own LAN address to any external port 1-65535, so that with
//     authentication on, known hosts can also have well-known ports such
//     as 80 and 443. Unauthenticated requests never match it.
//  2. "default": hosts on the LAN subnets may map internal ports
//     1024-65535 to external ports 1024-65535.
//
// Both apply to any protocol and not on behalf of other hosts. Everything
// else, well-known ports for unauthenticated requests included, is denied
// by default.
func DefaultRules() []Rule {
	return []Rule{{
		Action:   Allow,
		UseLAN:   true,
		IntPorts: PortRange{1, 65535},
		ExtPorts: PortRange{1, 65535},
		Proto:    ProtoAny,
		AuthAny:  true,
		Name:     "default-authenticated",
	}, {
		Action:   Allow,
		UseLAN:   true,
		IntPorts: PortRange{1024, 65535},
		ExtPorts: PortRange{1024, 65535},
		Proto:    ProtoAny,
		Name:     "default",
	}}
}
