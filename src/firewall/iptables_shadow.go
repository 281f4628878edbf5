//go:build linux

package firewall

// The iptables backend's changes go through one engine (applyChanges): a
// list of Adds and Removes becomes one `iptables-restore --noflush` run
// that deletes each changed key's old rules (-D with their exact specs) and
// appends its new ones. Where the old rules come from decides the cost:
//
//   - While the shadow is trusted (its generation is the one the kernel
//     reports now: iptables-nft's nftables generation id, or the legacy
//     tables' fingerprint), from the shadow: a generation read and one
//     exec, however many pinholes are installed.
//   - Otherwise, from listing both chains (`iptables -S`, two execs that
//     read every rule), after which the shadow is re-established if the
//     chains held nothing but canonical dpfd rules.
//
// A failed run (say, -D of a rule someone deleted, which a legacy
// fingerprint cannot see) drops the shadow and the change is made again
// the slow way. iptables-restore commits each table section on its own
// (nat first), so a failure can leave the nat part done and the filter
// part not; the listing sees exactly that, and Verify, whose mark a failed
// change drops, finds what other keys it left.
//
// One exec per change is as far as dpfd can take it: iptables-restore
// itself still costs more as rules grow (iptables-nft fetches and parses
// the chain to resolve a -D, iptables-legacy rewrites the whole table); see
// BenchmarkIPTablesAddRemove.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// iptShadow is the iptables backend's copy of the pinholes whose rules it
// knows to be in its chains, exactly as iptRules writes them and once
// each. It is pure and not safe for concurrent use; about 60 bytes a
// pinhole, as it lives as long as the daemon.
type iptShadow struct {
	// gen is the generation (or legacy fingerprint) read when the
	// kernel held exactly pinholes.
	gen      uint32
	pinholes map[Key]iptTarget
}

// iptTarget is a shadowed pinhole without its key.
type iptTarget struct {
	addr    [4]byte
	port    uint16
	filters []Filter // normalized; nil for none
}

func (t iptTarget) pinhole(k Key) Pinhole {
	return Pinhole{Proto: k.Proto, ExternalPort: k.ExternalPort,
		InternalAddr: netip.AddrFrom4(t.addr), InternalPort: t.port, Filters: t.filters}
}

// newIPTShadow returns the shadow of m (validated) at generation gen.
func newIPTShadow(m map[Key]Pinhole, gen uint32) *iptShadow {
	s := &iptShadow{gen: gen, pinholes: make(map[Key]iptTarget, len(m))}
	for k, p := range m {
		s.pinholes[k] = iptTarget{addr: p.InternalAddr.As4(), port: p.InternalPort, filters: p.Filters}
	}
	return s
}

// iptChange is one change for applyChanges: install p under k, or with p
// nil remove what is installed under k. p is validated.
type iptChange struct {
	k Key
	p *Pinhole
}

// iptOp is what one change does to the rules of one key: delete the old
// rules, then append the new ones.
type iptOp struct {
	delNAT, delFwd [][]string
	addNAT         []string // nil: none
	addFwd         [][]string
}

// iptBatch is a list of ops, run as one iptables-restore input or, without
// iptables-restore, rule by rule.
type iptBatch []iptOp

// sections returns the number of table sections input holds, each of
// which iptables-restore commits on its own.
func (x iptBatch) sections() int {
	n := 0
	if slices.ContainsFunc(x, func(o iptOp) bool { return len(o.delNAT) > 0 || o.addNAT != nil }) {
		n++
	}
	if slices.ContainsFunc(x, func(o iptOp) bool { return len(o.delFwd) > 0 || len(o.addFwd) > 0 }) {
		n++
	}
	return n
}

// input is the `iptables-restore --noflush` input of x: a *nat section
// (committed first, so that no new flow is set up for a pinhole whose
// forward rules go), then a *filter section, each left out when empty.
func (x iptBatch) input() []byte {
	var nat, fwd strings.Builder
	line := func(s *strings.Builder, op, chain string, spec []string) {
		s.WriteString(op + " " + chain)
		for _, a := range spec {
			s.WriteString(" " + restoreQuote(a))
		}
		s.WriteString("\n")
	}
	for _, o := range x {
		for _, spec := range o.delNAT {
			line(&nat, "-D", iptChainNAT, spec)
		}
		if o.addNAT != nil {
			line(&nat, "-A", iptChainNAT, o.addNAT)
		}
		for _, spec := range o.delFwd {
			line(&fwd, "-D", iptChainForward, spec)
		}
		for _, spec := range o.addFwd {
			line(&fwd, "-A", iptChainForward, spec)
		}
	}
	var s strings.Builder
	if nat.Len() > 0 {
		s.WriteString("*nat\n" + nat.String() + "COMMIT\n")
	}
	if fwd.Len() > 0 {
		s.WriteString("*filter\n" + fwd.String() + "COMMIT\n")
	}
	return []byte(s.String())
}

// restoreQuote quotes a for iptables-restore if it needs it: a rule
// listed from our chains may carry someone's comment with blanks in it.
func restoreQuote(a string) string {
	if a != "" && !strings.ContainsAny(a, " \t\"\\") {
		return a
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(a) + `"`
}

// runRuleByRule makes x's changes with one iptables call per rule, for
// systems without iptables-restore: per op, DNAT first out and last in.
func (b *iptBackend) runRuleByRule(x iptBatch) error {
	for _, o := range x {
		if err := b.deleteRules(o.delNAT, o.delFwd); err != nil {
			return err
		}
		for _, spec := range o.addFwd {
			if err := b.ipt.Append(iptTableFilter, iptChainForward, spec...); err != nil {
				return fmt.Errorf("firewall: iptables -A %s: %w", iptChainForward, err)
			}
		}
		if o.addNAT != nil {
			if err := b.ipt.Append(iptTableNAT, iptChainNAT, o.addNAT...); err != nil {
				return fmt.Errorf("firewall: iptables -t nat -A %s: %w", iptChainNAT, err)
			}
		}
	}
	return nil
}

// alone reports whether the generation moving from g0 to g1 is explained
// by commits commits of ours. iptables-nft commits each table section of
// an iptables-restore run as one nftables transaction, and the kernel
// counts each as one generation; more means someone else committed too.
// The legacy fingerprint is no counter, so there it cannot tell: a change
// made between our listing and our run goes unseen until Verify, whose
// mark each of our changes drops.
func (b *iptBackend) alone(g0, g1 uint32, commits int) bool {
	return !b.counted || g1-g0 <= uint32(commits)
}

// shadowGen returns the current generation if the shadow is trusted: it
// exists, iptables-restore does, and the generation is the shadow's.
func (b *iptBackend) shadowGen() (uint32, bool) {
	if b.shadow == nil || b.gen == nil || b.noRestore {
		return 0, false
	}
	g, err := b.gen.read()
	return g, err == nil && g == b.shadow.gen
}

// applyChanges makes cs, in order, in one iptables-restore run: from the
// shadow while it is trusted, otherwise (or if that run fails) from a
// listing of both chains. It is a change of ours (see changing).
func (b *iptBackend) applyChanges(cs []iptChange) error {
	mark := b.mark // as it was before changing forgets it
	defer b.changing()()
	if g0, ok := b.shadowGen(); ok {
		err := b.applyShadowed(g0, mark, cs)
		if err == nil {
			return nil
		}
		b.cfg.Logger.Debug("iptables: change from the shadow failed, reading the chains", "changes", len(cs), "err", err)
	}
	return b.applyRead(cs)
}

// applyShadowed is applyChanges' fast path; g0 is the generation the
// shadow matched and mark the clean mark before the change. Any error
// drops the shadow. When the kernel was verified clean at g0 and the
// generation moved by exactly our commits, it is clean after them too:
// the mark moves with the shadow, so that dpfd's own changes do not make
// the next periodic check read every rule.
func (b *iptBackend) applyShadowed(g0 uint32, mark cleanMark, cs []iptChange) error {
	after := make(map[Key]*Pinhole, len(cs)) // the keys cs change, as they leave them
	cur := func(k Key) (Pinhole, bool) {
		if p, ok := after[k]; ok {
			if p == nil {
				return Pinhole{}, false
			}
			return *p, true
		}
		t, ok := b.shadow.pinholes[k]
		return t.pinhole(k), ok
	}
	var x iptBatch
	for _, c := range cs {
		old, had := cur(c.k)
		if (!had && c.p == nil) || (had && c.p != nil && equalPinholes(old, *c.p)) {
			continue // already so
		}
		var o iptOp
		if had {
			n, f := iptRules(old)
			o.delNAT, o.delFwd = [][]string{n}, f
		}
		if c.p != nil {
			o.addNAT, o.addFwd = iptRules(*c.p)
		}
		x = append(x, o)
		after[c.k] = c.p
	}
	if len(x) == 0 {
		b.mark = mark // nothing changed
		return nil
	}
	if err := b.ipt.Restore(x.input()); err != nil {
		b.shadow = nil
		if err == ErrUnsupported {
			b.noRestore = true
		}
		return fmt.Errorf("firewall: iptables-restore: %w", err)
	}
	g1, err := b.gen.read()
	if err != nil || !b.alone(g0, g1, x.sections()) {
		b.shadow = nil
		return nil
	}
	clean := b.counted && g1-g0 == uint32(x.sections()) && mark.matches(g0, len(b.shadow.pinholes))
	for k, p := range after {
		if p == nil {
			delete(b.shadow.pinholes, k)
		} else {
			b.shadow.pinholes[k] = iptTarget{addr: p.InternalAddr.As4(), port: p.InternalPort, filters: p.Filters}
		}
	}
	b.shadow.gen = g1
	if clean {
		b.mark = cleanMark{valid: true, gen: g1, count: len(b.shadow.pinholes)}
	}
	return nil
}

// iptGroup is the rules of one key found in our chains.
type iptGroup struct {
	nat, fwd [][]string
}

// applyRead is applyChanges' slow path: it lists both chains, diffs each
// change against what they hold, makes the changes in one
// iptables-restore run (rule by rule without it), and re-establishes the
// shadow if the chains held only canonical dpfd rules.
func (b *iptBackend) applyRead(cs []iptChange) error {
	b.shadow = nil
	var g0 uint32
	genErr := ErrUnsupported
	if b.gen != nil {
		g0, genErr = b.gen.read() // before listing: see alone
	}
	nr, okN, err := b.list(iptTableNAT, iptChainNAT)
	if err != nil {
		return err
	}
	fr, okF, err := b.list(iptTableFilter, iptChainForward)
	if err != nil {
		return err
	}
	groups := make(map[Key]*iptGroup)
	group := func(k Key) *iptGroup {
		g := groups[k]
		if g == nil {
			g = &iptGroup{}
			groups[k] = g
		}
		return g
	}
	for _, r := range nr {
		if r.ours {
			g := group(r.key)
			g.nat = append(g.nat, r.spec)
		}
	}
	for _, r := range fr {
		if r.ours {
			g := group(r.key)
			g.fwd = append(g.fwd, r.spec)
		}
	}
	inited := false
	if (!okN || !okF) && slices.ContainsFunc(cs, func(c iptChange) bool { return c.p != nil }) {
		// Someone deleted our chains: re-create them and the jumps.
		if err := b.Init(); err != nil {
			return err
		}
		inited = true
	}
	var x iptBatch
	for _, c := range cs {
		g := groups[c.k]
		if g == nil {
			g = &iptGroup{}
		}
		var want iptGroup
		if c.p != nil {
			n, f := iptRules(*c.p)
			want = iptGroup{nat: [][]string{n}, fwd: f}
		}
		if equalSpecs(g.nat, want.nat) && equalSpecs(g.fwd, want.fwd) {
			continue // already so
		}
		o := iptOp{delNAT: g.nat, delFwd: g.fwd, addFwd: want.fwd}
		if c.p != nil {
			o.addNAT = want.nat[0]
		}
		x = append(x, o)
		if c.p != nil {
			groups[c.k] = &want
		} else {
			delete(groups, c.k)
		}
	}
	if len(x) > 0 {
		err := ErrUnsupported
		if !b.noRestore {
			err = b.ipt.Restore(x.input())
		}
		if err == ErrUnsupported {
			b.noRestore = true
			err = b.runRuleByRule(x)
		} else if err != nil {
			err = fmt.Errorf("firewall: iptables-restore: %w", err)
		}
		if err != nil {
			return err
		}
	}
	if genErr != nil || inited || !okN || !okF || b.noRestore {
		return nil // no shadow: nothing to vouch for it
	}
	m, ok := canonicalPinholes(groups)
	if !ok {
		return nil
	}
	g1, err := b.gen.read()
	if err == nil && b.alone(g0, g1, x.sections()) {
		b.shadow = newIPTShadow(m, g1)
	}
	return nil
}

// canonicalPinholes returns the pinholes whose rules groups are, if each
// group is exactly the rules iptRules writes for a valid pinhole;
// otherwise ok is false.
func canonicalPinholes(groups map[Key]*iptGroup) (m map[Key]Pinhole, ok bool) {
	m = make(map[Key]Pinhole, len(groups))
	for k, g := range groups {
		p, ok := parseGroup(k, g)
		if !ok {
			return nil, false
		}
		nat, fwd := iptRules(p)
		if !equalSpecs(g.nat, [][]string{nat}) || !equalSpecs(g.fwd, fwd) {
			return nil, false
		}
		m[k] = p
	}
	return m, true
}

// parseGroup reads the pinhole back from one key's rules, as Installed
// does; ok is false if they are not one DNAT rule and valid forward rules.
func parseGroup(k Key, g *iptGroup) (Pinhole, bool) {
	if len(g.nat) != 1 || len(g.fwd) == 0 {
		return Pinhole{}, false
	}
	nat := iptRule{spec: g.nat[0]}
	to, ok := nat.arg("--to-destination")
	if !ok {
		return Pinhole{}, false
	}
	ap, err := netip.ParseAddrPort(to)
	if err != nil {
		return Pinhole{}, false
	}
	p := Pinhole{Proto: k.Proto, ExternalPort: k.ExternalPort, InternalAddr: ap.Addr(), InternalPort: ap.Port()}
	if len(g.fwd) > 1 {
		for _, spec := range g.fwd[:len(g.fwd)-1] {
			r := iptRule{spec: spec}
			f := Filter{Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
			if s, ok := r.arg("-s"); ok {
				if f.Prefix, err = netip.ParsePrefix(s); err != nil {
					return Pinhole{}, false
				}
			}
			if s, ok := r.arg("--sport"); ok {
				n, err := strconv.ParseUint(s, 10, 16)
				if err != nil {
					return Pinhole{}, false
				}
				f.Port = uint16(n)
			}
			p.Filters = append(p.Filters, f)
		}
	}
	v, err := validate(p)
	if err != nil {
		return Pinhole{}, false
	}
	return v, true
}
