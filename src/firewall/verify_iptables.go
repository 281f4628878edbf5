//go:build linux

package firewall

import (
	"fmt"
	"slices"
	"time"
)

var (
	_ Verifier  = (*iptBackend)(nil)
	_ Watchable = (*iptBackend)(nil)
)

// Unchanged compares the nftables generation id (iptables-nft), or the
// legacy tables' fingerprint (see legacyGen), with the one at which Verify
// last found everything in place.
func (b *iptBackend) Unchanged(n int) bool {
	if b.gen == nil {
		return false
	}
	gen, err := b.gen.read()
	return err == nil && b.mark.matches(gen, n)
}

// Verify lists the two built-in chains with our jumps and our two chains
// (four `iptables -S` runs, the cost of one listing each) and compares them
// with what Sync(ps) would install: each jump exactly once, first, with the
// current WAN interface; each pinhole's rules exactly once, in order; no
// other rules in our chains.
func (b *iptBackend) Verify(ps []Pinhole) (Drift, error) {
	want, err := validateAll(ps)
	if err != nil {
		return Drift{}, err
	}
	var gen uint32
	genErr := ErrUnsupported
	if b.gen != nil {
		// Before reading, so that the mark never covers a change made
		// while we read.
		gen, genErr = b.gen.read()
	}
	d, err := b.compare(want)
	if err != nil {
		return Drift{}, err
	}
	if d.Clean() && genErr == nil {
		b.mark = cleanMark{valid: true, gen: gen, count: len(want)}
		// The chains hold exactly want's rules, once each: what
		// changes diff against from now on (iptables_shadow.go).
		b.shadow = newIPTShadow(want, gen)
	} else {
		b.mark = cleanMark{}
		b.shadow = nil
	}
	return d, nil
}

func (b *iptBackend) compare(want map[Key]Pinhole) (Drift, error) {
	var d Drift
	for _, j := range b.jumps() {
		rules, _, err := b.list(j.table, j.chain)
		if err != nil {
			return d, err
		}
		n, first := 0, -1
		var spec []string
		for i, r := range rules {
			if t, _ := r.arg("-j"); t == j.target {
				if n == 0 {
					first, spec = i, r.spec
				}
				n++
			}
		}
		where := fmt.Sprintf("jump from %s %s to %s", j.table, j.chain, j.target)
		switch {
		case n == 0:
			d.Structure = append(d.Structure, where+" missing")
		case n > 1:
			d.Structure = append(d.Structure, fmt.Sprintf("%s duplicated (%d)", where, n))
		case first != 0:
			d.Structure = append(d.Structure, where+" not first")
		case !slices.Equal(spec, j.spec):
			d.Structure = append(d.Structure, where+" altered")
		}
	}
	nat := make(map[Key][][]string)
	fwd := make(map[Key][][]string)
	for _, c := range []struct {
		table, chain string
		into         map[Key][][]string
	}{{iptTableNAT, iptChainNAT, nat}, {iptTableFilter, iptChainForward, fwd}} {
		rules, ok, err := b.list(c.table, c.chain)
		if err != nil {
			return d, err
		}
		if !ok {
			d.Structure = append(d.Structure, fmt.Sprintf("chain %s %s missing", c.table, c.chain))
			continue
		}
		foreign := 0
		for _, r := range rules {
			if !r.ours {
				foreign++
				continue
			}
			c.into[r.key] = append(c.into[r.key], r.spec)
		}
		if foreign > 0 {
			d.Structure = append(d.Structure, fmt.Sprintf("%d rules in %s %s are not dpfd's", foreign, c.table, c.chain))
		}
	}
	for _, k := range sortedKeys(want) {
		n, f := iptRules(want[k])
		wn, wf := [][]string{n}, f
		gn, gf := nat[k], fwd[k]
		switch {
		case equalSpecs(gn, wn) && equalSpecs(gf, wf):
		case equalSpecs(dedupSpecs(gn), wn) && equalSpecs(dedupSpecs(gf), wf):
			d.Duplicated = append(d.Duplicated, k)
		default:
			d.Missing = append(d.Missing, k)
		}
	}
	stale := make(map[Key]Pinhole)
	for _, m := range []map[Key][][]string{nat, fwd} {
		for k := range m {
			if _, ok := want[k]; !ok {
				stale[k] = Pinhole{}
			}
		}
	}
	if len(stale) > 0 {
		d.Stale = sortedKeys(stale)
	}
	return d, nil
}

func equalSpecs(a, b [][]string) bool { return slices.EqualFunc(a, b, slices.Equal) }

// dedupSpecs returns specs without repeats, keeping first occurrences in
// order.
func dedupSpecs(specs [][]string) [][]string {
	var out [][]string
	for _, s := range specs {
		if !slices.ContainsFunc(out, func(o []string) bool { return slices.Equal(o, s) }) {
			out = append(out, s)
		}
	}
	return out
}

// NewWatcher subscribes to changes of the nat and filter tables of family
// ip, where iptables-nft keeps every iptables rule, leaving out those that
// arrive while a change of the backend's own runs (see changing).
// iptables-legacy sends no notifications: ErrUnsupported.
func (b *iptBackend) NewWatcher() (Watcher, error) {
	if !b.events {
		return nil, fmt.Errorf("%w: iptables-legacy sends no change notifications", ErrUnsupported)
	}
	w, err := newNFTWatcher(b.cfg.NetNS, b.cfg.Logger, func(family uint8, table string) bool {
		return family == nfprotoIPv4 && (table == iptTableNAT || table == iptTableFilter) && !b.own.active(time.Now())
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}
