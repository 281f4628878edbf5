//go:build linux

package firewall

// The iptables backend keeps its rules in two chains of its own:
//
//	*nat
//	-A PREROUTING -i WAN -j DPF-PREROUTING             (inserted at position 1)
//	-A DPF-PREROUTING -p tcp -m tcp --dport EXT -m comment --comment "dpf:tcp:EXT" -j DNAT --to-destination INT:PORT
//	*filter
//	-A FORWARD -j DPF-FORWARD                          (kept at position 1, so a DROP policy or later drops don't win)
//	unfiltered pinhole:
//	-A DPF-FORWARD -d INT/32 -p tcp -m tcp --dport PORT -m conntrack --ctstate DNAT --ctorigdstport EXT -m comment --comment "dpf:tcp:EXT" -j ACCEPT
//	filtered pinhole, one ACCEPT per filter then a DROP:
//	-A DPF-FORWARD -s PREFIX -d INT/32 -p tcp -m tcp [--sport P] --dport PORT -m conntrack ... -j ACCEPT
//	-A DPF-FORWARD -d INT/32 -p tcp -m tcp --dport PORT -m conntrack ... -j DROP
//
// Every pinhole rule carries the comment "dpf:PROTO:EXT", which is how Add,
// Remove and Installed find a pinhole's rules in a listing. Add, Remove and
// Apply list only when they cannot trust their shadow of what they
// installed (iptables_shadow.go); otherwise they cost one iptables-restore.
// Unlike nftables, iptables costs one rule per pinhole (and filter) per
// packet; that is inherent.
//
// The rule specs are written in the canonical form `iptables -S` prints, so
// that "is this pinhole already installed" is a comparison of argument
// lists. Should an iptables version print them otherwise, Add rewrites the
// pinhole's rules instead of doing nothing, which is still correct.

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// Chains and tables of the iptables backend.
const (
	iptChainNAT     = "DPF-PREROUTING"
	iptChainForward = "DPF-FORWARD"
	iptTableNAT     = "nat"
	iptTableFilter  = "filter"
	iptTagPrefix    = "dpf:"
)

type iptBackend struct {
	cfg Config
	ipt iptDriver
	// gen reads the nftables ruleset generation id when iptables is
	// iptables-nft (its tables are nftables tables), or the fingerprint
	// of the legacy tables (legacy_linux.go); nil with a test driver.
	// mark is the generation at which Verify last found everything in
	// place; every change of ours drops it (see Unchanged). events:
	// the kernel sends nftables notifications for these tables
	// (iptables-nft).
	gen    genSource
	mark   cleanMark
	events bool
	own    ownChanges
	// counted: gen is a counter of commits (the nftables generation
	// id), so a change of ours moves it by a known amount (see alone).
	counted bool
	// shadow is what our chains hold, trusted while gen reads its
	// generation (iptables_shadow.go); nil when not known.
	shadow *iptShadow
	// noRestore: the driver has no iptables-restore, so changes are
	// made rule by rule from a listing, without a shadow.
	noRestore bool
}

// newIPTables returns the iptables backend on driver d, or on the real
// iptables when d is nil.
func newIPTables(cfg Config, d iptDriver) (*iptBackend, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	b := &iptBackend{cfg: cfg, ipt: d}
	if d == nil {
		g, err := newGoIPTables(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		b.ipt = g
		if g.nft {
			b.gen, b.events, b.counted = &nftGen{netns: cfg.NetNS}, true, true
		} else {
			b.gen = &legacyGen{netns: cfg.NetNS, now: time.Now}
		}
	}
	return b, nil
}

func (b *iptBackend) Name() string { return "iptables" }

func (b *iptBackend) Close() error {
	if b.gen != nil {
		b.gen.close()
	}
	return nil
}

// changing is called at the start of every change of ours, and what it
// returns at the end. It forgets that the kernel was known to be in order:
// iptables-nft commits a varying number of transactions per command, so,
// unlike the nftables backend's, our commits cannot in general be told from
// others' by the generation id. Instead the watcher leaves out the
// notifications that arrive while a change of ours runs (see ownChanges);
// someone else's change made meanwhile is found by the next periodic
// Verify, which the forgotten mark makes read the rules. The one exception
// is a change made from the shadow on iptables-nft, whose commits are
// counted: applyShadowed carries the mark over it.
func (b *iptBackend) changing() (done func()) {
	b.mark = cleanMark{}
	return b.own.begin()
}

// ownGrace is how long after a change of ours its notifications are still
// taken for ours: they are queued at commit, before the iptables command
// returns, and the watcher reads them within milliseconds unless the
// machine is very busy (then a notification of ours costs one needless
// Verify, nothing worse).
const ownGrace = 100 * time.Millisecond

// ownChanges tells the watcher's goroutine whether a change of the
// backend's own is running or just ended.
type ownChanges struct {
	running atomic.Int32
	until   atomic.Int64 // Unix nanoseconds: end of the last change plus ownGrace
}

func (o *ownChanges) begin() (end func()) {
	o.running.Add(1)
	return func() {
		o.until.Store(time.Now().Add(ownGrace).UnixNano())
		o.running.Add(-1)
	}
}

// active reports whether a notification read at now is likely ours.
func (o *ownChanges) active(now time.Time) bool {
	return o.running.Load() > 0 || now.UnixNano() < o.until.Load()
}

// iptTag is the comment on every rule of the pinhole with key k.
func iptTag(k Key) string {
	return iptTagPrefix + k.Proto.String() + ":" + strconv.Itoa(int(k.ExternalPort))
}

func parseTag(s string) (Key, bool) {
	rest, ok := strings.CutPrefix(s, iptTagPrefix)
	if !ok {
		return Key{}, false
	}
	ps, port, ok := strings.Cut(rest, ":")
	n, err := strconv.ParseUint(port, 10, 16)
	if !ok || err != nil || n == 0 {
		return Key{}, false
	}
	switch ps {
	case "tcp":
		return Key{TCP, uint16(n)}, true
	case "udp":
		return Key{UDP, uint16(n)}, true
	}
	return Key{}, false
}

// iptRules returns the rule specs of p (validated): its DNAT rule for
// DPF-PREROUTING and its rules for DPF-FORWARD, in order.
func iptRules(p Pinhole) (nat []string, fwd [][]string) {
	proto := p.Proto.String()
	ext := strconv.Itoa(int(p.ExternalPort))
	tag := []string{"-m", "comment", "--comment", iptTag(p.Key())}
	nat = slices.Concat(
		[]string{"-p", proto, "-m", proto, "--dport", ext}, tag,
		[]string{"-j", "DNAT", "--to-destination", netip.AddrPortFrom(p.InternalAddr, p.InternalPort).String()})
	dst := []string{"-d", p.InternalAddr.String() + "/32", "-p", proto, "-m", proto}
	ct := []string{"--dport", strconv.Itoa(int(p.InternalPort)),
		"-m", "conntrack", "--ctstate", "DNAT", "--ctorigdstport", ext}
	if len(p.Filters) == 0 {
		return nat, [][]string{slices.Concat(dst, ct, tag, []string{"-j", "ACCEPT"})}
	}
	for _, f := range p.Filters {
		var src, sport []string
		if f.Prefix.Bits() > 0 { // iptables omits -s 0.0.0.0/0
			src = []string{"-s", f.Prefix.String()}
		}
		if f.Port != 0 {
			sport = []string{"--sport", strconv.Itoa(int(f.Port))}
		}
		fwd = append(fwd, slices.Concat(src, dst, sport, ct, tag, []string{"-j", "ACCEPT"}))
	}
	return nat, append(fwd, slices.Concat(dst, ct, tag, []string{"-j", "DROP"}))
}

// iptRule is one parsed line of `iptables -S CHAIN`.
type iptRule struct {
	spec []string // arguments after "-A CHAIN"
	key  Key
	ours bool // carries a dpf pinhole tag
}

func (r iptRule) arg(name string) (string, bool) {
	i := slices.Index(r.spec, name)
	if i < 0 || i+1 >= len(r.spec) {
		return "", false
	}
	return r.spec[i+1], true
}

// list returns the rules of table/chain. ok is false when the chain does
// not exist.
func (b *iptBackend) list(table, chain string) (rules []iptRule, ok bool, err error) {
	lines, err := b.ipt.List(table, chain)
	if err != nil {
		// iptables-nft says "incompatible" for a missing chain, so
		// ask rather than parse the message.
		if ok, cerr := b.ipt.ChainExists(table, chain); cerr == nil && !ok {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("firewall: iptables -t %s -S %s: %w", table, chain, err)
	}
	for _, l := range lines {
		args := splitRule(l)
		if len(args) < 2 || args[0] != "-A" || args[1] != chain {
			continue
		}
		r := iptRule{spec: args[2:]}
		if c, ok := r.arg("--comment"); ok {
			r.key, r.ours = parseTag(c)
		}
		rules = append(rules, r)
	}
	return rules, true, nil
}

// iptJump is a rule in a built-in chain that jumps to one of ours.
type iptJump struct {
	table, chain, target string
	spec                 []string
}

// jumps returns the jumps into our chains.
func (b *iptBackend) jumps() []iptJump {
	return []iptJump{
		{iptTableNAT, "PREROUTING", iptChainNAT, []string{"-i", b.cfg.WANInterface, "-j", iptChainNAT}},
		{iptTableFilter, "FORWARD", iptChainForward, []string{"-j", iptChainForward}},
	}
}

// Init creates the chains if missing and makes the jumps into them exactly
// one each, first in their chain, with the current WAN interface.
func (b *iptBackend) Init() error {
	defer b.changing()()
	for _, c := range []struct{ table, chain string }{{iptTableNAT, iptChainNAT}, {iptTableFilter, iptChainForward}} {
		ok, err := b.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return fmt.Errorf("firewall: iptables: %w", err)
		}
		if !ok {
			if err := b.ipt.ClearChain(c.table, c.chain); err != nil { // -N
				return fmt.Errorf("firewall: iptables -t %s -N %s: %w", c.table, c.chain, err)
			}
		}
	}
	_, err := b.ensureJumps()
	return err
}

// ensureJumps makes the jumps into our chains right; changes is the
// number of iptables commands it ran to do so.
func (b *iptBackend) ensureJumps() (changes int, err error) {
	for _, j := range b.jumps() {
		rules, _, err := b.list(j.table, j.chain)
		if err != nil {
			return changes, err
		}
		var ours [][]string
		first := -1
		for i, r := range rules {
			if t, _ := r.arg("-j"); t == j.target {
				if len(ours) == 0 {
					first = i
				}
				ours = append(ours, r.spec)
			}
		}
		if len(ours) == 1 && first == 0 && slices.Equal(ours[0], j.spec) {
			continue
		}
		// Wrong interface, not first, or duplicated: start over.
		for _, spec := range ours {
			changes++
			if err := b.ipt.Delete(j.table, j.chain, spec...); err != nil && !isNotExist(err) {
				return changes, fmt.Errorf("firewall: iptables -t %s -D %s: %w", j.table, j.chain, err)
			}
		}
		changes++
		if err := b.ipt.Insert(j.table, j.chain, 1, j.spec...); err != nil {
			return changes, fmt.Errorf("firewall: iptables -t %s -I %s: %w", j.table, j.chain, err)
		}
	}
	return changes, nil
}

// Add installs p unless exactly its rules are there; otherwise it deletes
// the pinhole's rules and appends the new ones, in one iptables-restore
// run (see applyChanges for what else it costs).
func (b *iptBackend) Add(p Pinhole) error {
	p, err := validate(p)
	if err != nil {
		return err
	}
	return b.applyChanges([]iptChange{{p.Key(), &p}})
}

// deleteRules deletes the given rules of our chains one by one.
func (b *iptBackend) deleteRules(nat, fwd [][]string) error {
	// DNAT first, so no new flow is set up for a half-removed pinhole.
	for _, spec := range nat {
		if err := b.ipt.Delete(iptTableNAT, iptChainNAT, spec...); err != nil && !isNotExist(err) {
			return fmt.Errorf("firewall: iptables -t nat -D %s: %w", iptChainNAT, err)
		}
	}
	for _, spec := range fwd {
		if err := b.ipt.Delete(iptTableFilter, iptChainForward, spec...); err != nil && !isNotExist(err) {
			return fmt.Errorf("firewall: iptables -D %s: %w", iptChainForward, err)
		}
	}
	return nil
}

// Remove deletes the rules tagged with k, in one iptables-restore run
// (see applyChanges).
func (b *iptBackend) Remove(k Key) error {
	return b.applyChanges([]iptChange{{k, nil}})
}

// Apply removes remove's pinholes and installs add's, in one
// iptables-restore run (see applyChanges).
func (b *iptBackend) Apply(add []Pinhole, remove []Key) error {
	cs := make([]iptChange, 0, len(remove)+len(add))
	for _, k := range remove {
		cs = append(cs, iptChange{k: k})
	}
	for _, p := range add {
		v, err := validate(p)
		if err != nil {
			return err
		}
		cs = append(cs, iptChange{v.Key(), &v})
	}
	return b.applyChanges(cs)
}

// Sync rewrites both chains with exactly ps's rules. With iptables-restore
// that is one call (each table is replaced atomically), after which the
// shadow is ps if no one else committed meanwhile; without, the chains are
// flushed and the rules appended one by one.
func (b *iptBackend) Sync(ps []Pinhole) error {
	defer b.changing()()
	want, err := validateAll(ps)
	if err != nil {
		return err
	}
	var nat, fwd [][]string
	for _, p := range sortedPinholes(want) {
		n, f := iptRules(p)
		nat = append(nat, n)
		fwd = append(fwd, f...)
	}
	b.shadow = nil
	var g0 uint32
	genErr := ErrUnsupported
	if b.gen != nil {
		g0, genErr = b.gen.read()
	}
	err = b.ipt.Restore(iptRestoreInput(nat, fwd))
	b.noRestore = err == ErrUnsupported
	if b.noRestore {
		b.cfg.Logger.Debug("iptables: no iptables-restore, syncing rule by rule")
		err = b.syncSlow(nat, fwd)
	}
	if err != nil {
		return fmt.Errorf("firewall: iptables sync: %w", err)
	}
	jumps, err := b.ensureJumps()
	if err != nil || genErr != nil || b.noRestore {
		return err
	}
	// The restore commits its two tables, ensureJumps one generation
	// per command.
	if g1, err := b.gen.read(); err == nil && b.alone(g0, g1, 2+jumps) {
		b.shadow = newIPTShadow(want, g1)
	}
	return nil
}

// iptRestoreInput is the `iptables-restore --noflush` input that creates (or
// flushes) our two chains and fills them. Declaring a chain flushes it; other
// chains are left alone.
func iptRestoreInput(nat, fwd [][]string) []byte {
	var s strings.Builder
	s.WriteString("*nat\n:" + iptChainNAT + " - [0:0]\n")
	for _, spec := range nat {
		s.WriteString("-A " + iptChainNAT + " " + strings.Join(spec, " ") + "\n")
	}
	s.WriteString("COMMIT\n*filter\n:" + iptChainForward + " - [0:0]\n")
	for _, spec := range fwd {
		s.WriteString("-A " + iptChainForward + " " + strings.Join(spec, " ") + "\n")
	}
	s.WriteString("COMMIT\n")
	return []byte(s.String())
}

func (b *iptBackend) syncSlow(nat, fwd [][]string) error {
	if err := b.ipt.ClearChain(iptTableNAT, iptChainNAT); err != nil {
		return err
	}
	if err := b.ipt.ClearChain(iptTableFilter, iptChainForward); err != nil {
		return err
	}
	for _, spec := range fwd {
		if err := b.ipt.Append(iptTableFilter, iptChainForward, spec...); err != nil {
			return err
		}
	}
	for _, spec := range nat {
		if err := b.ipt.Append(iptTableNAT, iptChainNAT, spec...); err != nil {
			return err
		}
	}
	return nil
}

// Installed parses the pinholes back from our chains' tagged rules.
func (b *iptBackend) Installed() ([]Pinhole, error) {
	nr, _, err := b.list(iptTableNAT, iptChainNAT)
	if err != nil {
		return nil, err
	}
	fr, _, err := b.list(iptTableFilter, iptChainForward)
	if err != nil {
		return nil, err
	}
	ps := make(map[Key]Pinhole)
	for _, r := range nr {
		to, ok := r.arg("--to-destination")
		if !r.ours || !ok {
			continue
		}
		ap, err := netip.ParseAddrPort(to)
		if err != nil {
			return nil, fmt.Errorf("firewall: iptables rule %q: %w", strings.Join(r.spec, " "), err)
		}
		ps[r.key] = Pinhole{Proto: r.key.Proto, ExternalPort: r.key.ExternalPort,
			InternalAddr: ap.Addr(), InternalPort: ap.Port()}
	}
	filtered := make(map[Key][]Filter)
	dropped := make(map[Key]bool)
	for _, r := range fr {
		if !r.ours {
			continue
		}
		switch t, _ := r.arg("-j"); t {
		case "DROP":
			dropped[r.key] = true
		case "ACCEPT":
			f := Filter{Prefix: netip.PrefixFrom(netip.IPv4Unspecified(), 0)}
			if s, ok := r.arg("-s"); ok {
				if f.Prefix, err = netip.ParsePrefix(s); err != nil {
					return nil, fmt.Errorf("firewall: iptables rule %q: %w", strings.Join(r.spec, " "), err)
				}
			}
			if s, ok := r.arg("--sport"); ok {
				n, err := strconv.ParseUint(s, 10, 16)
				if err != nil {
					return nil, fmt.Errorf("firewall: iptables rule %q: %w", strings.Join(r.spec, " "), err)
				}
				f.Port = uint16(n)
			}
			filtered[r.key] = append(filtered[r.key], f)
		}
	}
	out := sortedPinholes(ps)
	for i, p := range out {
		if dropped[p.Key()] {
			out[i].Filters, _ = normalizeFilters(filtered[p.Key()])
		}
	}
	return out, nil
}

// Cleanup deletes the jumps into our chains, then the chains.
func (b *iptBackend) Cleanup() error {
	defer b.changing()()
	b.shadow = nil
	for _, j := range b.jumps() {
		rules, _, err := b.list(j.table, j.chain)
		if err != nil {
			return err
		}
		for _, r := range rules {
			if t, _ := r.arg("-j"); t != j.target {
				continue
			}
			if err := b.ipt.Delete(j.table, j.chain, r.spec...); err != nil && !isNotExist(err) {
				return fmt.Errorf("firewall: iptables -t %s -D %s: %w", j.table, j.chain, err)
			}
		}
	}
	for _, c := range []struct{ table, chain string }{{iptTableNAT, iptChainNAT}, {iptTableFilter, iptChainForward}} {
		ok, err := b.ipt.ChainExists(c.table, c.chain)
		if err != nil {
			return fmt.Errorf("firewall: iptables: %w", err)
		}
		if !ok {
			continue
		}
		if err := b.ipt.ClearChain(c.table, c.chain); err != nil {
			return fmt.Errorf("firewall: iptables -t %s -F %s: %w", c.table, c.chain, err)
		}
		if err := b.ipt.DeleteChain(c.table, c.chain); err != nil {
			return fmt.Errorf("firewall: iptables -t %s -X %s: %w", c.table, c.chain, err)
		}
	}
	return nil
}
