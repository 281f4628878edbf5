//go:build linux

package firewall

// The nftables backend keeps everything in one table, "table ip dpf", and
// does all per-packet lookups through sets and maps: the rule set is nine
// rules whatever the number of pinholes. `nft list table ip dpf` shows:
//
//	table ip dpf {
//		map dnat_tcp { type inet_service : ipv4_addr . inet_service }   # ext port : int addr . int port
//		map dnat_udp { ... }
//		set filtered_tcp { type inet_service }                            # ext ports that have filters
//		set filtered_udp { ... }
//		set allow_tcp { type inet_service . ipv4_addr . inet_service; flags interval }  # ext port . peer prefix . peer port (0-65535 for any)
//		set allow_udp { ... }
//		set fwd_pinholes { type ipv4_addr . inet_proto . inet_service }  # int addr . proto . int port
//		chain filter_pre { type filter hook prerouting priority mangle; policy accept;
//			iifname "WAN" ct direction original tcp dport @filtered_tcp tcp dport . ip saddr . tcp sport != @allow_tcp drop
//			(same for udp) }
//		chain dnat_pre { type nat hook prerouting priority dstnat; policy accept;
//			iifname "WAN" dnat ip to tcp dport map @dnat_tcp
//			(same for udp) }
//		chain filter_fwd { type filter hook forward priority filter - 1; policy accept;
//			ct status dnat ip daddr . meta l4proto . th dport @fwd_pinholes accept }
//	}
//
// filter_pre runs before DNAT (priority mangle < dstnat) so it still sees the
// external port; "ct direction original" keeps it off reply packets of
// connections a LAN host opened from a port that is also a pinhole's.
//
// An accept verdict ends only the base chain it is in: other base chains on
// the forward hook (fw4's "forward", with policy drop) still see the packet.
// fw4 accepts DNATed flows itself only when a port forward exists in the
// zone, so the OpenWrt package ships a snippet that fw4 includes on every
// reload (files/usr/share/nftables.d/chain-post/forward/30-dpf.nft:
// "ct status dnat accept"); elsewhere a firewall with a forward policy of
// drop needs the same rule.
// Drops are final, so filter_pre needs no help.

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// nftConn is the part of *nftables.Conn the backend uses, so that a fake can
// stand in. Calls that build a batch only queue messages; Flush sends them as
// one netlink transaction.
type nftConn interface {
	AddTable(*nftables.Table) *nftables.Table
	DelTable(*nftables.Table)
	ListTablesOfFamily(nftables.TableFamily) ([]*nftables.Table, error)
	AddChain(*nftables.Chain) *nftables.Chain
	FlushChain(*nftables.Chain)
	ListChainsOfTableFamily(nftables.TableFamily) ([]*nftables.Chain, error)
	AddRule(*nftables.Rule) *nftables.Rule
	GetRules(*nftables.Table, *nftables.Chain) ([]*nftables.Rule, error)
	AddSet(*nftables.Set, []nftables.SetElement) error
	FlushSet(*nftables.Set)
	GetSets(*nftables.Table) ([]*nftables.Set, error)
	GetSetElements(*nftables.Set) ([]nftables.SetElement, error)
	SetAddElements(*nftables.Set, []nftables.SetElement) error
	SetDeleteElements(*nftables.Set, []nftables.SetElement) error
	Flush() error
}

var _ nftConn = (*nftables.Conn)(nil)

type nftBackend struct {
	cfg  Config
	conn nftConn
	ns   *os.File // network namespace of conn (Config.NetNS), or nil
	// gen reads the ruleset generation id; mark is the generation at
	// which the kernel last held exactly what this backend installed
	// (see commit and Unchanged).
	gen  genSource
	mark cleanMark
	// shadow is what this backend installed at generation shadow.gen.
	// While the mark is valid at that same generation (nobody else
	// committed since), Add and Remove diff against it instead of reading
	// every element back, so their cost does not grow with the number of
	// pinholes. nil when unknown. Verify leaves it alone: a Verify that
	// vouches for a later generation does not vouch for the shadow.
	shadow *nftShadow
	// elemSets describes the sets for element changes (queueDiff), made
	// once: every change used to build them anew, a tenth of what a
	// request allocated.
	elemSets map[string]*nftables.Set
}

// setNames is setOrder(), computed once.
var setNames = setOrder()

// newNFTables returns the nftables backend. It fails with ErrUnsupported when
// nftables cannot be used over netlink.
func newNFTables(cfg Config) (*nftBackend, error) {
	cfg, err := checkConfig(cfg)
	if err != nil {
		return nil, err
	}
	b := &nftBackend{cfg: cfg, gen: &nftGen{netns: cfg.NetNS}}
	opts := []nftables.ConnOption{nftables.WithSockOptions(growSendBuffer)}
	if cfg.NetNS != "" {
		// The socket is dialled (and re-dialled after errors) in this
		// namespace: keep the file open until Close.
		if b.ns, err = openNetNS(cfg.NetNS); err != nil {
			return nil, err
		}
		opts = append(opts, nftables.WithNetNSFd(int(b.ns.Fd())))
	}
	c, err := newLastingConn(opts...)
	if err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: nftables: %v", ErrUnsupported, err)
	}
	b.conn = c
	if _, err := c.ListTablesOfFamily(nftables.TableFamilyIPv4); err != nil {
		b.Close()
		return nil, fmt.Errorf("%w: nftables: %v", ErrUnsupported, err)
	}
	return b, nil
}

func (b *nftBackend) Name() string { return "nftables" }

func (b *nftBackend) Close() error {
	b.gen.close()
	if c, ok := b.conn.(*lastingConn); ok {
		c.Close()
	}
	if b.ns != nil {
		err := b.ns.Close()
		b.ns = nil
		return err
	}
	return nil
}

func (b *nftBackend) table() *nftables.Table {
	return &nftables.Table{Family: nftables.TableFamilyIPv4, Name: nftTableName}
}

// sets returns fresh descriptions of the table's sets, by name.
func (b *nftBackend) sets(t *nftables.Table) map[string]*nftables.Set {
	m := make(map[string]*nftables.Set)
	for _, p := range nftProtos {
		// map dnat_tcp { type inet_service : ipv4_addr . inet_service; }
		m[nftDNATMap(p)] = &nftables.Set{
			Table: t, Name: nftDNATMap(p), IsMap: true,
			KeyType:      nftables.TypeInetService,
			DataType:     nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService),
			KeyByteOrder: binaryutil.BigEndian,
		}
		// set filtered_tcp { type inet_service; }
		m[nftFiltered(p)] = &nftables.Set{
			Table: t, Name: nftFiltered(p),
			KeyType:      nftables.TypeInetService,
			KeyByteOrder: binaryutil.BigEndian,
		}
		// set allow_tcp { type inet_service . ipv4_addr . inet_service; flags interval; }
		m[nftAllow(p)] = &nftables.Set{
			Table: t, Name: nftAllow(p), Interval: true, Concatenation: true,
			KeyType:      nftables.MustConcatSetType(nftables.TypeInetService, nftables.TypeIPAddr, nftables.TypeInetService),
			KeyByteOrder: binaryutil.BigEndian,
		}
	}
	// set fwd_pinholes { type ipv4_addr . inet_proto . inet_service; }
	m[nftSetForward] = &nftables.Set{
		Table: t, Name: nftSetForward,
		KeyType:      nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService),
		KeyByteOrder: binaryutil.BigEndian,
	}
	return m
}

// setOrder is the order sets are created in (for stable listings).
func setOrder() []string {
	var names []string
	for _, p := range nftProtos {
		names = append(names, nftDNATMap(p))
	}
	for _, p := range nftProtos {
		names = append(names, nftFiltered(p))
	}
	for _, p := range nftProtos {
		names = append(names, nftAllow(p))
	}
	return append(names, nftSetForward)
}

// queueStructure queues, into the pending batch, the table, its sets and
// its chains with their rules. Existing objects are kept (no NLM_F_EXCL),
// the chains are flushed and their rules re-added, so the rules always
// carry the current WAN interface. Set elements are not touched.
func (b *nftBackend) queueStructure(t *nftables.Table, sets map[string]*nftables.Set) error {
	b.conn.AddTable(t) // add table ip dpf
	for _, name := range setOrder() {
		if err := b.conn.AddSet(sets[name], nil); err != nil {
			return fmt.Errorf("firewall: nftables set %s: %w", name, err)
		}
	}
	chains := nftChains(t)
	for _, c := range chains {
		b.conn.AddChain(c)
		b.conn.FlushChain(c) // flush chain ip dpf NAME
	}
	for _, r := range b.rules(t, chains, sets) {
		b.conn.AddRule(r)
	}
	return nil
}

// nftChains returns the base chains of table t: filter_pre, dnat_pre and
// filter_fwd, in that order.
func nftChains(t *nftables.Table) []*nftables.Chain {
	accept := nftables.ChainPolicyAccept
	return []*nftables.Chain{{
		// chain filter_pre { type filter hook prerouting priority mangle; policy accept; }
		Table: t, Name: nftChainFilterPre, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-150), Policy: &accept,
	}, {
		// chain dnat_pre { type nat hook prerouting priority dstnat; policy accept; }
		Table: t, Name: nftChainDNAT, Type: nftables.ChainTypeNAT,
		Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-100), Policy: &accept,
	}, {
		// chain filter_fwd { type filter hook forward priority filter - 1; policy accept; }
		Table: t, Name: nftChainForward, Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-1), Policy: &accept,
	}}
}

// rules returns the rules of the chains (as nftChains returns them), in
// order.
func (b *nftBackend) rules(t *nftables.Table, chains []*nftables.Chain, sets map[string]*nftables.Set) []*nftables.Rule {
	pre, dnat, fwd := chains[0], chains[1], chains[2]
	var rules []*nftables.Rule
	ifname := make([]byte, 16) // IFNAMSIZ, NUL padded: an exact match
	copy(ifname, b.cfg.WANInterface)
	iif := []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: ifname},
	}
	for _, p := range nftProtos {
		isProto := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{byte(p)}},
		}
		allow, filtered, dmap := sets[nftAllow(p)], sets[nftFiltered(p)], sets[nftDNATMap(p)]
		// add rule ip dpf filter_pre iifname "WAN" ct direction original
		//     tcp dport @filtered_tcp tcp dport . ip saddr . tcp sport != @allow_tcp drop
		rules = append(rules, &nftables.Rule{Table: t, Chain: pre, Exprs: concatExprs(iif,
			[]expr.Any{
				&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0}}, // IP_CT_DIR_ORIGINAL
			},
			isProto,
			[]expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: filtered.Name, SetID: filtered.ID},
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Payload{DestRegister: 9, Base: expr.PayloadBaseNetworkHeader, Offset: 12, Len: 4},
				&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
				&expr.Lookup{SourceRegister: 1, SetName: allow.Name, SetID: allow.ID, Invert: true},
				&expr.Verdict{Kind: expr.VerdictDrop},
			})})
		// add rule ip dpf dnat_pre iifname "WAN" dnat ip to tcp dport map @dnat_tcp
		rules = append(rules, &nftables.Rule{Table: t, Chain: dnat, Exprs: concatExprs(iif, isProto,
			[]expr.Any{
				&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
				&expr.Lookup{SourceRegister: 1, DestRegister: 1, IsDestRegSet: true, SetName: dmap.Name, SetID: dmap.ID},
				// The map data is addr (reg 1) . port (reg 9).
				&expr.NAT{Type: expr.NATTypeDestNAT, Family: unix.NFPROTO_IPV4, RegAddrMin: 1, RegProtoMin: 9},
			})})
	}
	fset := sets[nftSetForward]
	// add rule ip dpf filter_fwd ct status dnat ip daddr . meta l4proto . th dport @fwd_pinholes accept
	rules = append(rules, &nftables.Rule{Table: t, Chain: fwd, Exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(ipsDstNAT), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 16, Len: 4},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 9},
		&expr.Payload{DestRegister: 10, Base: expr.PayloadBaseTransportHeader, Offset: 2, Len: 2},
		&expr.Lookup{SourceRegister: 1, SetName: fset.Name, SetID: fset.ID},
		&expr.Verdict{Kind: expr.VerdictAccept},
	}})
	return rules
}

func concatExprs(parts ...[]expr.Any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// Init creates the table, sets and chains if missing and (re)writes the
// rules, in one batch. Set elements (the pinholes) are kept.
func (b *nftBackend) Init() error {
	t := b.table()
	if err := b.queueStructure(t, b.sets(t)); err != nil {
		return err
	}
	// The elements are untouched: still clean if they were.
	if err := b.commit(false, b.mark.count); err != nil {
		return fmt.Errorf("firewall: nftables init: %w", err)
	}
	b.cfg.Logger.Debug("nftables: table ready", "table", nftTableName, "wan", b.cfg.WANInterface)
	return nil
}

// Sync re-creates the structure (as Init) and replaces every set's elements
// with those of ps, all in one batch.
func (b *nftBackend) Sync(ps []Pinhole) error {
	want, err := validateAll(ps)
	if err != nil {
		return err
	}
	return b.syncValid(want)
}

func (b *nftBackend) syncValid(want map[Key]Pinhole) error {
	t := b.table()
	sets := b.sets(t)
	if err := b.queueStructure(t, sets); err != nil {
		return err
	}
	elems := nftElements(want)
	for _, name := range setOrder() {
		b.conn.FlushSet(sets[name]) // flush set ip dpf NAME
		if len(elems[name]) == 0 {
			continue
		}
		if err := b.queueElements(sets[name], elems[name], false); err != nil {
			return fmt.Errorf("firewall: nftables set %s: %w", name, err)
		}
	}
	if err := b.commit(true, len(want)); err != nil {
		return fmt.Errorf("firewall: nftables sync: %w", err)
	}
	b.setShadow(want)
	b.cfg.Logger.Debug("nftables: synced", "pinholes", len(want))
	return nil
}

// nftElemChunk is how many elements go into one netlink message: the
// element list is one attribute, whose length field has 16 bits, and an
// element takes up to about 100 bytes.
const nftElemChunk = 256

// queueElements queues the addition (or, with del, the deletion by key) of
// es to set s, in messages of at most nftElemChunk elements, all in the
// pending batch.
func (b *nftBackend) queueElements(s *nftables.Set, es []nftElem, del bool) error {
	for len(es) > 0 {
		n := min(len(es), nftElemChunk)
		var err error
		if del {
			// delete element ip dpf NAME { ... }
			err = b.conn.SetDeleteElements(s, setElements(es[:n], true))
		} else {
			// add element ip dpf NAME { ... }
			err = b.conn.SetAddElements(s, setElements(es[:n], false))
		}
		if err != nil {
			return err
		}
		es = es[n:]
	}
	return nil
}

// nftSendBuffer is the send buffer of the netlink sockets the backend
// commits on. A batch is one sendmsg and the kernel refuses one larger than
// the buffer (EMSGSIZE); the default (wmem_default, 208 kB) holds a Sync of
// only about 2,000 pinholes. 16 MB is a Sync of every port of both
// protocols; memory is only taken for what a batch holds.
const nftSendBuffer = 16 << 20

// growSendBuffer is a google/nftables socket option (the type parameter
// stands for *netlink.Conn, inferred where it is passed, so that this
// package need not import mdlayher/netlink). SO_SNDBUFFORCE, which root
// may use beyond wmem_max, else SO_SNDBUF up to that limit.
func growSendBuffer[C interface {
	SyscallConn() (syscall.RawConn, error)
}](c C) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return err
	}
	return rc.Control(func(fd uintptr) {
		if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, nftSendBuffer) != nil {
			unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_SNDBUF, nftSendBuffer)
		}
	})
}

func setElements(es []nftElem, keysOnly bool) []nftables.SetElement {
	out := make([]nftables.SetElement, len(es))
	for i, e := range es {
		if keysOnly {
			e.Val = nil // deletion is by key (and key end)
		}
		out[i] = e.setElement()
	}
	return out
}

// errNoTable reports that dpfd's table or one of its sets is missing.
var errNoTable = errors.New("nftables table missing")

// read returns the elements of every set. It returns errNoTable when the
// table or any of its sets does not exist.
func (b *nftBackend) read() (nftState, error) {
	t := b.table()
	found, err := b.tableExists()
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, errNoTable
	}
	have, err := b.conn.GetSets(t)
	if err != nil {
		return nil, fmt.Errorf("firewall: nftables list sets: %w", err)
	}
	byName := make(map[string]*nftables.Set)
	for _, s := range have {
		byName[s.Name] = s
	}
	st := make(nftState)
	for _, name := range setOrder() {
		s, ok := byName[name]
		if !ok {
			return nil, errNoTable
		}
		es, err := b.conn.GetSetElements(s)
		if err != nil {
			return nil, fmt.Errorf("firewall: nftables list set %s: %w", name, err)
		}
		for _, e := range es {
			st[name] = append(st[name], nftElem{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val})
		}
	}
	return st, nil
}

// Installed reads the pinholes back from the set elements over netlink.
// No table means no pinholes.
func (b *nftBackend) Installed() ([]Pinhole, error) {
	st, err := b.read()
	if errors.Is(err, errNoTable) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return nftPinholes(st)
}

// Add installs p by adding and deleting only the elements that differ, in
// one batch. If the table is gone, it re-creates it (as Sync) with the
// pinholes that remain.
func (b *nftBackend) Add(p Pinhole) error {
	p, err := validate(p)
	if err != nil {
		return err
	}
	return b.change(p.Key(), &p)
}

// Remove deletes the elements of the pinhole with key k, in one batch.
func (b *nftBackend) Remove(k Key) error {
	return b.change(k, nil)
}

// Apply removes remove's pinholes and installs add's. While the clean mark
// vouches for the shadow it is one netlink batch, however many changes and
// pinholes there are; otherwise, or if that batch fails, it makes the
// changes one by one as Remove and Add do.
func (b *nftBackend) Apply(add []Pinhole, remove []Key) error {
	valid := make([]Pinhole, len(add))
	for i, p := range add {
		v, err := validate(p)
		if err != nil {
			return err
		}
		valid[i] = v
	}
	if g0, ok := b.shadowTrusted(); ok {
		err := b.applyShadowed(g0, valid, remove)
		if err == nil {
			return nil
		}
		b.cfg.Logger.Debug("nftables: batched change failed, changing one by one", "changes", len(add)+len(remove), "err", err)
	}
	for _, k := range remove {
		if err := b.change(k, nil); err != nil {
			return err
		}
	}
	for i := range valid {
		if err := b.change(valid[i].Key(), &valid[i]); err != nil {
			return err
		}
	}
	return nil
}

// shadowTrusted reads the ruleset generation and reports whether the clean
// mark vouches for the shadow at it, so that changes may be diffed against
// the shadow alone.
func (b *nftBackend) shadowTrusted() (gen uint32, ok bool) {
	g0, err := b.gen.read()
	return g0, err == nil && b.shadow != nil && b.shadow.gen == g0 && b.mark.matches(g0, b.shadow.len())
}

// applyShadowed is the fast path of Apply, Add and Remove: g0 is the generation the mark
// matched. Each change is diffed against the shadow as the changes before
// it left it, so a key's removal and another key's addition of a shared
// forward element come out right; if the batch fails the shadow is
// dropped, since it then holds changes the kernel refused.
func (b *nftBackend) applyShadowed(g0 uint32, add []Pinhole, remove []Key) error {
	queued := false
	step := func(k Key, p *Pinhole) error {
		del, ins, ok := b.shadow.diff(k, p)
		if !ok {
			return nil
		}
		if err := b.queueDiff(del, ins); err != nil {
			return err
		}
		b.shadow.apply(k, p)
		queued = true
		return nil
	}
	for _, k := range remove {
		if err := step(k, nil); err != nil {
			b.invalidate()
			return err
		}
	}
	for i := range add {
		if err := step(add[i].Key(), &add[i]); err != nil {
			b.invalidate()
			return err
		}
	}
	if !queued {
		return nil
	}
	if err := b.commitAt(g0, nil, false, b.shadow.len()); err != nil {
		b.invalidate()
		return fmt.Errorf("firewall: nftables update: %w", err)
	}
	if b.mark.valid {
		b.shadow.gen = b.mark.gen
	} else {
		b.shadow = nil
	}
	return nil
}

// change installs p (validated) under key k, or with p nil removes what is
// installed under k. While the clean mark vouches for the shadow, it diffs
// one pinhole against the shadow (a generation read and the commit, however
// many pinholes are installed); otherwise, or if that batch fails, it reads
// the kernel's elements and diffs them all.
func (b *nftBackend) change(k Key, p *Pinhole) error {
	if g0, ok := b.shadowTrusted(); ok {
		var err error
		if p != nil {
			err = b.applyShadowed(g0, []Pinhole{*p}, nil)
		} else {
			err = b.applyShadowed(g0, nil, []Key{k})
		}
		if err == nil {
			return nil
		}
		b.cfg.Logger.Debug("nftables: incremental change failed, reading the kernel", "key", k, "err", err)
	}
	return b.changeRead(k, p)
}

// changeRead is change's slow path: it reads every element back.
func (b *nftBackend) changeRead(k Key, p *Pinhole) error {
	cur, err := b.read()
	missing := errors.Is(err, errNoTable)
	if missing {
		if p == nil {
			return nil
		}
		b.cfg.Logger.Debug("nftables: table or set missing, re-creating")
		cur = nftState{}
	} else if err != nil {
		return err
	}
	ps, err := nftPinholes(cur)
	if err != nil {
		return err
	}
	m := make(map[Key]Pinhole, len(ps)+1)
	for _, p := range ps {
		m[p.Key()] = p
	}
	if p != nil {
		m[k] = *p
	} else {
		delete(m, k)
	}
	if missing {
		return b.syncValid(m)
	}
	del, add := nftDiff(cur, nftElements(m))
	if len(del) == 0 && len(add) == 0 {
		return nil // already so
	}
	if err := b.queueDiff(del, add); err != nil {
		return err
	}
	if err := b.commit(false, len(m)); err != nil {
		return fmt.Errorf("firewall: nftables update: %w", err)
	}
	b.setShadow(m)
	return nil
}

// queueDiff queues the deletion of del's elements, then the addition of
// add's, into the pending batch.
func (b *nftBackend) queueDiff(del, add nftState) error {
	if b.elemSets == nil {
		b.elemSets = b.sets(b.table())
	}
	sets := b.elemSets
	for _, name := range setNames {
		if len(del[name]) > 0 {
			// delete element ip dpf NAME { ... }
			if err := b.queueElements(sets[name], del[name], true); err != nil {
				return err
			}
		}
	}
	for _, name := range setNames {
		if len(add[name]) > 0 {
			// add element ip dpf NAME { ... }
			if err := b.queueElements(sets[name], add[name], false); err != nil {
				return err
			}
		}
	}
	return nil
}

// setShadow records m (validated; the shadow keeps it) as what the kernel
// holds, if the clean mark vouches for it; otherwise it forgets the shadow.
func (b *nftBackend) setShadow(m map[Key]Pinhole) {
	if b.mark.valid && b.mark.count == len(m) {
		b.shadow = newNFTShadow(m, b.mark.gen)
	} else {
		b.shadow = nil
	}
}

// invalidate forgets the clean mark and the shadow: the next change reads
// the kernel and the next check verifies.
func (b *nftBackend) invalidate() {
	b.mark = cleanMark{}
	b.shadow = nil
}

// Cleanup deletes table ip dpf if it exists.
func (b *nftBackend) Cleanup() error {
	ok, err := b.tableExists()
	if err != nil || !ok {
		return err
	}
	b.conn.DelTable(b.table()) // delete table ip dpf
	b.invalidate()
	if err := b.conn.Flush(); err != nil {
		return fmt.Errorf("firewall: nftables cleanup: %w", err)
	}
	return nil
}

// commit sends the queued batch as one transaction. full says that the
// batch re-creates the whole state (Sync) and count is the number of
// pinholes installed after it. It keeps b.mark: the kernel commits each
// transaction as one generation, so when the generation id moved by at most
// one across the batch, no one else committed meanwhile, and the kernel
// holds what we installed if it did before (or, after a full batch, in any
// case). Otherwise the mark is dropped and the next Verify reads the kernel.
func (b *nftBackend) commit(full bool, count int) error {
	g0, err0 := b.gen.read()
	return b.commitAt(g0, err0, full, count)
}

// commitAt is commit with the generation (or the error reading it) taken
// before the batch was queued.
func (b *nftBackend) commitAt(g0 uint32, err0 error, full bool, count int) error {
	if err := b.conn.Flush(); err != nil {
		b.invalidate()
		return err
	}
	g1, err1 := b.gen.read()
	alone := err0 == nil && err1 == nil && g1-g0 <= 1
	switch {
	case alone && full:
		b.mark = cleanMark{valid: true, gen: g1, count: count}
	case alone && b.mark.valid && b.mark.gen == g0:
		b.mark.gen, b.mark.count = g1, count
	default:
		b.invalidate()
	}
	return nil
}

func (b *nftBackend) tableExists() (bool, error) {
	tables, err := b.conn.ListTablesOfFamily(nftables.TableFamilyIPv4)
	if err != nil {
		return false, fmt.Errorf("firewall: nftables list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == nftTableName {
			return true, nil
		}
	}
	return false, nil
}

// ipsDstNAT is IPS_DST_NAT from linux/netfilter/nf_conntrack_common.h, the
// conntrack status bit "ct status dnat" tests.
const ipsDstNAT = 1 << 5
