//go:build linux

package firewall

import (
	"encoding/hex"
	"fmt"
	"slices"
	"strings"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

var (
	_ Verifier  = (*nftBackend)(nil)
	_ Watchable = (*nftBackend)(nil)
)

// Unchanged compares the ruleset generation id with the one at which the
// kernel last held what this backend installed: one netlink round trip.
func (b *nftBackend) Unchanged(n int) bool {
	gen, err := b.gen.read()
	return err == nil && b.mark.matches(gen, n)
}

// Verify reads table ip dpf (its chains with their hooks and rules, its sets
// and their elements) and compares it with what Sync(ps) would install.
// When they match, Unchanged holds until the next change.
func (b *nftBackend) Verify(ps []Pinhole) (Drift, error) {
	want, err := validateAll(ps)
	if err != nil {
		return Drift{}, err
	}
	// The generation first: a change made while we read moves it on, so
	// the mark never covers a change we did not see.
	gen, genErr := b.gen.read()
	d, err := b.compare(want)
	if err != nil {
		return Drift{}, err
	}
	if d.Clean() && genErr == nil {
		b.mark = cleanMark{valid: true, gen: gen, count: len(want)}
	} else {
		b.mark = cleanMark{}
	}
	return d, nil
}

func (b *nftBackend) compare(want map[Key]Pinhole) (Drift, error) {
	var d Drift
	found, err := b.tableExists()
	if err != nil {
		return d, err
	}
	if !found {
		d.Structure = append(d.Structure, "table ip "+nftTableName+" missing")
		d.Missing = sortedKeys(want)
		return d, nil
	}
	t := b.table()
	sets := b.sets(t)
	if err := b.compareChains(&d, t, sets); err != nil {
		return d, err
	}
	have, err := b.conn.GetSets(t)
	if err != nil {
		return d, fmt.Errorf("firewall: nftables list sets: %w", err)
	}
	byName := make(map[string]*nftables.Set, len(have))
	for _, s := range have {
		byName[s.Name] = s
	}
	cur := make(nftState)
	for _, name := range setOrder() {
		s, ok := byName[name]
		if !ok {
			d.Structure = append(d.Structure, "set "+name+" missing")
			continue
		}
		es, err := b.conn.GetSetElements(s)
		if err != nil {
			return d, fmt.Errorf("firewall: nftables list set %s: %w", name, err)
		}
		for _, e := range es {
			cur[name] = append(cur[name], nftElem{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val})
		}
	}
	installed, err := nftPinholes(cur)
	if err != nil {
		// Elements dpfd never writes: someone else's. Sync replaces
		// them all.
		d.Structure = append(d.Structure, "foreign set elements: "+err.Error())
		d.Missing = sortedKeys(want)
		return d, nil
	}
	d.Missing, d.Stale = diffKeys(want, installed)
	if len(d.Missing) == 0 && len(d.Stale) == 0 {
		// The pinholes decode right; left-over elements (a forward
		// accept or a filter without its pinhole) may remain.
		del, add := nftDiff(cur, nftElements(want))
		for _, name := range setOrder() {
			if len(del[name])+len(add[name]) > 0 {
				d.Structure = append(d.Structure, fmt.Sprintf("set %s: %d stray, %d missing elements", name, len(del[name]), len(add[name])))
			}
		}
	}
	return d, nil
}

// compareChains checks that our base chains exist with their hooks and
// exactly their rules.
func (b *nftBackend) compareChains(d *Drift, t *nftables.Table, sets map[string]*nftables.Set) error {
	all, err := b.conn.ListChainsOfTableFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return fmt.Errorf("firewall: nftables list chains: %w", err)
	}
	have := make(map[string]*nftables.Chain)
	for _, c := range all {
		if c.Table != nil && c.Table.Name == nftTableName {
			have[c.Name] = c
		}
	}
	want := nftChains(t)
	wantRules := make(map[string][]string)
	for _, r := range b.rules(t, want, sets) {
		wantRules[r.Chain.Name] = append(wantRules[r.Chain.Name], ruleSignature(r.Exprs))
	}
	for _, w := range want {
		c, ok := have[w.Name]
		switch {
		case !ok:
			d.Structure = append(d.Structure, "chain "+w.Name+" missing")
			continue
		case c.Hooknum == nil || c.Priority == nil || *c.Hooknum != *w.Hooknum ||
			*c.Priority != *w.Priority || c.Type != w.Type:
			d.Structure = append(d.Structure, "chain "+w.Name+" not hooked as dpfd made it")
			continue
		}
		rules, err := b.conn.GetRules(t, c)
		if err != nil {
			return fmt.Errorf("firewall: nftables list chain %s: %w", w.Name, err)
		}
		got := make([]string, len(rules))
		for i, r := range rules {
			got[i] = ruleSignature(r.Exprs)
		}
		if !slices.Equal(got, wantRules[w.Name]) {
			d.Structure = append(d.Structure, fmt.Sprintf("chain %s: %d rules, not dpfd's %d", w.Name, len(got), len(wantRules[w.Name])))
		}
	}
	return nil
}

// ruleSignature sums up what a rule does in terms that survive the round
// trip through the kernel: the sets it looks up, the values it compares
// with and its verdicts. Registers and the like are left out.
func ruleSignature(es []expr.Any) string {
	var s strings.Builder
	for _, e := range es {
		switch e := e.(type) {
		case *expr.Lookup:
			s.WriteString("@" + e.SetName)
			if e.Invert {
				s.WriteString("!")
			}
		case *expr.Cmp:
			fmt.Fprintf(&s, "cmp%d:%s", e.Op, hex.EncodeToString(e.Data))
		case *expr.Verdict:
			fmt.Fprintf(&s, "verdict%d", e.Kind)
		case *expr.NAT:
			fmt.Fprintf(&s, "nat%d", e.Type)
		default:
			continue
		}
		s.WriteString(" ")
	}
	return s.String()
}

// NewWatcher subscribes to changes of table ip dpf.
func (b *nftBackend) NewWatcher() (Watcher, error) {
	w, err := newNFTWatcher(b.cfg.NetNS, b.cfg.Logger, func(family uint8, table string) bool {
		return family == nfprotoIPv4 && table == nftTableName
	})
	if err != nil {
		return nil, err
	}
	return w, nil
}
