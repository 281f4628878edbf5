package policy

import "slices"

// ExtRanges returns the external ports in which a mapping for r would be
// allowed, as sorted, disjoint, non-adjacent ranges; r.ExtPort is ignored.
// A port p is in the result exactly when Check with r.ExtPort = p allows.
//
// Approach: first match wins per port, so the rules are walked in order
// keeping the set of external ports no earlier rule has decided yet. Each
// rule that matches r on everything but the external port decides the
// undecided ports in its ExtPorts: they join the result if the rule allows r
// (Allow, and ThirdParty if r is third party) and are dropped otherwise. The
// walk stops when no port is left undecided. The cost is linear in the
// number of rules times the number of ranges, never in the number of ports.
//
// The result may contain port 0 when a rule's ExtPorts does; allocators must
// skip it. A nil or empty result means no external port is allowed.
func (p *Policy) ExtRanges(r Request) []PortRange {
	if p == nil {
		return nil
	}
	third := r.ThirdParty()
	undecided := []PortRange{AnyPorts}
	var allowed []PortRange
	for i := range p.Rules {
		rule := &p.Rules[i]
		if !rule.ExtPorts.Valid() || !p.matchesExceptExt(rule, r) {
			continue
		}
		if rule.Action == Allow && (!third || rule.ThirdParty) {
			allowed = append(allowed, intersect(undecided, rule.ExtPorts)...)
		}
		undecided = subtract(undecided, rule.ExtPorts)
		if len(undecided) == 0 {
			break
		}
	}
	return normalize(allowed)
}

// intersect returns the parts of the sorted disjoint set s inside x.
func intersect(s []PortRange, x PortRange) []PortRange {
	var out []PortRange
	for _, y := range s {
		lo, hi := max(y.First, x.First), min(y.Last, x.Last)
		if lo <= hi {
			out = append(out, PortRange{lo, hi})
		}
	}
	return out
}

// subtract returns the sorted disjoint set s without the ports in x.
func subtract(s []PortRange, x PortRange) []PortRange {
	var out []PortRange
	for _, y := range s {
		if y.Last < x.First || y.First > x.Last {
			out = append(out, y)
			continue
		}
		if y.First < x.First {
			out = append(out, PortRange{y.First, x.First - 1})
		}
		if y.Last > x.Last {
			out = append(out, PortRange{x.Last + 1, y.Last})
		}
	}
	return out
}

// normalize sorts s and merges overlapping and adjacent ranges.
func normalize(s []PortRange) []PortRange {
	if len(s) == 0 {
		return nil
	}
	slices.SortFunc(s, func(a, b PortRange) int { return int(a.First) - int(b.First) })
	out := s[:1]
	for _, x := range s[1:] {
		last := &out[len(out)-1]
		if int(x.First) <= int(last.Last)+1 {
			last.Last = max(last.Last, x.Last)
			continue
		}
		out = append(out, x)
	}
	return out
}
