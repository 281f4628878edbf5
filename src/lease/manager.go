package lease

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/policy"
)

// Firewall is the part of a firewall backend the Manager uses.
type Firewall interface {
	Add(p firewall.Pinhole) error
	Remove(k firewall.Key) error
	// Sync makes the installed pinholes exactly ps.
	Sync(ps []firewall.Pinhole) error
}

// Store makes leases durable. Put and Delete must be on stable storage when
// they return: the protocol server answers only after that.
type Store interface {
	Put(l Lease) error
	Delete(k Key) error
	// PutExpiries records renewed expiry times in one write; it is called
	// at most once per checkpoint interval.
	PutExpiries(ls []Lease) error
	// Apply stores puts and deletes dels in one durable write, all or
	// nothing: the changes of one batch of requests (see batch.go).
	Apply(puts []Lease, dels []Key) error
}

// Config configures a Manager. Zero values mean the documented defaults.
type Config struct {
	MinLifetime time.Duration // default 120 s
	MaxLifetime time.Duration // default 24 h
	MaxPerHost  int           // leases one requesting host may hold; default 64
	MaxLeases   int           // leases in all; default 4096
	// CheckpointInterval bounds how far a renewed lease's stored expiry
	// may fall behind its real expiry; default 5 min.
	CheckpointInterval time.Duration
	Policy             *policy.Policy // nil denies everything
	Clock              clock.Clock    // nil means the real clock
	Logger             *slog.Logger   // nil discards
	Firewall           Firewall       // required
	Store              Store          // required
	// OnChange, if not nil, is called after every lease is created,
	// renewed or removed (expired, released, deleted), once the change is
	// in the store, the firewall and the table. It is called without any
	// of the Manager's locks held, so it may call the Manager's methods,
	// and in the order the changes were made; but it is called on the
	// goroutine that made a change (a protocol request, an expiry),
	// possibly for changes other goroutines made meanwhile, so it must
	// return quickly and must not block: hand the event to a queue.
	// Restore does not report the leases it loads.
	OnChange func(Event)
	// Reserved, if not nil, reports external ports that are never handed
	// out, whatever the policy allows: the ports of the router's own
	// services, whose traffic a mapping's DNAT would divert. A suggested
	// reserved port gets another one (ErrCannotProvideExternal with
	// PreferFailure). It is called while a new lease's port is chosen,
	// with the change lock held and possibly for thousands of ports, so
	// it must be quick and must not call the Manager. Existing leases
	// keep their port.
	Reserved func(proto firewall.Proto, port uint16) bool
}

// Defaults for Config's zero values.
const (
	DefaultMinLifetime        = 120 * time.Second
	DefaultMaxLifetime        = 24 * time.Hour
	DefaultMaxPerHost         = 64
	DefaultMaxLeases          = 4096
	DefaultCheckpointInterval = 5 * time.Minute
)

// entry is a lease plus the Manager's bookkeeping. The table holds one per
// lease, so it is kept within a 256-byte allocation (the times as int64,
// not time.Time).
type entry struct {
	Lease
	deadline mono  // when the lease lapses, on the Manager's clock
	stored   int64 // wall expiry last written to the store, unix ns
	idx      int   // position in the expiry heap
}

// mono is a time on the Manager's clock, as the time since Manager.base:
// monotonic when the clock is real, as a time.Time from it would be.
type mono int64

func (m *Manager) mono(t time.Time) mono { return mono(t.Sub(m.base)) }

// storedAs is what entry.stored holds once expiry t is stored.
func storedAs(t time.Time) int64 { return t.UnixNano() }

// internalKey identifies a lease by where it forwards to. Leases are IPv4
// (Map refuses others, Restore drops them), so the address takes 4 bytes:
// the index has an entry per lease.
type internalKey struct {
	addr  [4]byte
	proto firewall.Proto
	port  uint16
}

// internalKeyOf returns the internalKey of (addr, proto, port); for an
// address that is not IPv4, one that no lease has (port 0).
func internalKeyOf(addr netip.Addr, proto firewall.Proto, port uint16) internalKey {
	if addr = addr.Unmap(); !addr.Is4() {
		return internalKey{proto: proto}
	}
	return internalKey{addr.As4(), proto, port}
}

// Manager owns the lease table. Its methods are safe for concurrent use.
type Manager struct {
	cfg   Config
	clk   clock.Clock
	base  time.Time // the origin of the entries' mono deadlines
	log   *slog.Logger
	fw    Firewall
	store Store
	wake  chan struct{}

	// opMu serialises changes: it is held across store and firewall I/O
	// so that the table, the store and the kernel change in one order.
	// Holders of opMu may read the maps below without mu.
	opMu sync.Mutex

	mu     sync.RWMutex
	policy *policy.Policy
	byKey  map[Key]*entry
	byInt  map[internalKey]*entry
	// byHost indexes the leases by requesting host (Lease.Client): the
	// per-host quota and a client's "delete all" cost what that host
	// holds, not what the table holds.
	byHost   map[netip.Addr]map[Key]*entry
	expiries expiryHeap
	counters Counters

	// fwDirty is set when a firewall change failed after the store
	// changed; Run then re-syncs the firewall until it succeeds. Guarded
	// by opMu.
	fwDirty bool

	// lead is held (one token) by the caller leading request batches;
	// qMu guards queue, the Map calls waiting for a batch (batch.go).
	lead  chan struct{}
	qMu   sync.Mutex
	queue []*pending

	onChange func(Event) // cfg.OnChange; nil reports nothing
	// evMu guards the events made under opMu and not yet handed to
	// onChange, and whether a goroutine is handing them out (see
	// deliver). It is taken with opMu held, never the other way round.
	evMu       sync.Mutex
	events     []Event
	delivering bool
}

// Counters are totals since the Manager started.
type Counters struct {
	Created uint64 `json:"created"`
	Renewed uint64 `json:"renewed"`
	Deleted uint64 `json:"deleted"`
	Expired uint64 `json:"expired"`
	Refused uint64 `json:"refused"`
	// FirewallFailures counts requests that failed because the firewall
	// refused to install or update their pinhole.
	FirewallFailures uint64 `json:"firewall_failures"`
	// StoreFailures counts lease writes and deletions the store (the
	// database) refused: the request, deletion or expiry that needed one
	// failed (an expiry is tried again).
	StoreFailures uint64 `json:"store_failures"`
}

// New returns a Manager with an empty table. Call Restore before serving
// requests, and Run to expire leases.
func New(cfg Config) *Manager {
	if cfg.MinLifetime <= 0 {
		cfg.MinLifetime = DefaultMinLifetime
	}
	if cfg.MaxLifetime <= 0 {
		cfg.MaxLifetime = DefaultMaxLifetime
	}
	if cfg.MaxLifetime < cfg.MinLifetime {
		cfg.MaxLifetime = cfg.MinLifetime
	}
	if cfg.MaxPerHost <= 0 {
		cfg.MaxPerHost = DefaultMaxPerHost
	}
	if cfg.MaxLeases <= 0 {
		cfg.MaxLeases = DefaultMaxLeases
	}
	if cfg.CheckpointInterval <= 0 {
		cfg.CheckpointInterval = DefaultCheckpointInterval
	}
	m := &Manager{
		cfg:    cfg,
		clk:    cfg.Clock,
		log:    cfg.Logger,
		fw:     cfg.Firewall,
		store:  cfg.Store,
		wake:   make(chan struct{}, 1),
		lead:   make(chan struct{}, 1),
		policy: cfg.Policy,
		byKey:  make(map[Key]*entry),
		byInt:  make(map[internalKey]*entry),
		byHost: make(map[netip.Addr]map[Key]*entry),

		onChange: cfg.OnChange,
	}
	if m.clk == nil {
		m.clk = clock.Real{}
	}
	m.base = m.clk.Now()
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	if m.policy == nil {
		m.policy = &policy.Policy{}
	}
	return m
}

// SetPolicy replaces the policy. Existing leases are checked again at their
// next renewal.
func (m *Manager) SetPolicy(p *policy.Policy) {
	m.mu.Lock()
	m.policy = p
	m.mu.Unlock()
}

// SetLimits replaces the lifetime bounds and quotas (after a configuration
// reload). Zero values keep the current setting.
func (m *Manager) SetLimits(minLife, maxLife time.Duration, perHost, total int) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if minLife > 0 {
		m.cfg.MinLifetime = minLife
	}
	if maxLife > 0 {
		m.cfg.MaxLifetime = max(maxLife, m.cfg.MinLifetime)
	}
	if perHost > 0 {
		m.cfg.MaxPerHost = perHost
	}
	if total > 0 {
		m.cfg.MaxLeases = total
	}
}

// ClampLifetime applies the configured bounds to a requested lifetime.
func (m *Manager) ClampLifetime(d time.Duration) time.Duration {
	return min(max(d, m.cfg.MinLifetime), m.cfg.MaxLifetime)
}

// Map creates, renews or (Lifetime 0) deletes the mapping for the request's
// internal address, protocol and port. It returns the lease as granted; after
// a delete it returns the removed lease, or a zero Lease with no error when
// there was none (deleting is idempotent).
func (m *Manager) Map(r Request) (Lease, error) {
	if r.Proto != firewall.TCP && r.Proto != firewall.UDP {
		return Lease{}, m.refuse(r, fmt.Errorf("%w: %d", ErrUnsupportedProtocol, r.Proto))
	}
	if r.InternalPort == 0 {
		return Lease{}, m.refuse(r, fmt.Errorf("%w: internal port 0 (all ports) cannot be mapped", ErrBadRequest))
	}
	if !r.InternalAddr.Is4() || !r.Client.IsValid() {
		return Lease{}, m.refuse(r, fmt.Errorf("%w: only IPv4 internal addresses can be mapped", ErrBadRequest))
	}
	// Requests are carried out in batches with the others in flight, in
	// the order they arrive (batch.go).
	return m.submit(&pending{r: r, done: make(chan struct{})})
}

// authorize checks that r may change the existing mapping e.
func (m *Manager) authorize(e *entry, r Request) error {
	if e.Origin != r.Origin {
		return fmt.Errorf("%w: mapping %s/%d was made with %s", ErrNotAuthorized, e.Proto, e.ExternalPort, e.Origin)
	}
	if r.Origin == OriginPCP && e.Nonce != r.Nonce {
		return fmt.Errorf("%w: nonce does not match mapping %s/%d", ErrNotAuthorized, e.Proto, e.ExternalPort)
	}
	if e.Client != r.Client {
		return fmt.Errorf("%w: mapping %s/%d belongs to %s", ErrNotAuthorized, e.Proto, e.ExternalPort, e.Client)
	}
	if e.Auth != r.Auth {
		// A lease made with a key is its key's alone; one made
		// without a key is not taken over by a keyed request either,
		// so that what a lease records stays what created it.
		return fmt.Errorf("%w: mapping %s/%d was made %s, the request %s", ErrNotAuthorized, e.Proto, e.ExternalPort,
			authLabel(e.Auth), authLabel(r.Auth))
	}
	return nil
}

// authLabel describes a key name for messages.
func authLabel(name string) string {
	if name == "" {
		return "without a key"
	}
	return "with key " + name
}

func (m *Manager) policyRequest(r Request, ext uint16) policy.Request {
	return policy.Request{
		Client:  r.Client,
		IntAddr: r.InternalAddr,
		IntPort: r.InternalPort,
		ExtPort: ext,
		Proto:   policy.Proto(r.Proto),
		Key:     r.Auth,
	}
}

func (m *Manager) currentPolicy() *policy.Policy {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.policy
}

// allocate picks the external port for a new mapping; busy reports ports
// that are free in the table but spoken for (by the batch being decided).
func (m *Manager) allocate(r Request, ranges []policy.PortRange, busy func(Key) bool) (uint16, error) {
	inRanges := func(p uint16) bool {
		for _, rg := range ranges {
			if rg.Contains(p) {
				return true
			}
		}
		return false
	}
	reserved := func(p uint16) bool { return m.cfg.Reserved != nil && m.cfg.Reserved(r.Proto, p) }
	free := func(p uint16) bool {
		k := Key{Proto: r.Proto, ExternalPort: p}
		_, taken := m.byKey[k]
		return p != 0 && !taken && !busy(k) && inRanges(p) && !reserved(p)
	}
	if r.SuggestedPort != 0 {
		if free(r.SuggestedPort) {
			return r.SuggestedPort, nil
		}
		if r.PreferFailure {
			return 0, fmt.Errorf("%w: port %d", ErrCannotProvideExternal, r.SuggestedPort)
		}
	}
	// The internal port is the next best guess: many clients suggest
	// nothing and users expect the same number outside.
	if free(r.InternalPort) {
		return r.InternalPort, nil
	}
	var total int
	for _, rg := range ranges {
		total += int(rg.Last) - int(rg.First) + 1
	}
	// Random probes first (ports are not predictable), then a bounded
	// scan from a random start so a nearly full range still succeeds.
	const probes = 32
	for range probes {
		if p := pickPort(ranges, total, rand.IntN(total)); free(p) {
			return p, nil
		}
	}
	start := rand.IntN(total)
	for i := range total {
		if p := pickPort(ranges, total, (start+i)%total); free(p) {
			return p, nil
		}
	}
	return 0, fmt.Errorf("%w: no free external port", ErrNoResources)
}

func pickPort(ranges []policy.PortRange, total, n int) uint16 {
	for _, rg := range ranges {
		size := int(rg.Last) - int(rg.First) + 1
		if n < size {
			return rg.First + uint16(n)
		}
		n -= size
	}
	return 0
}

// removeLocked deletes e from the store, the firewall and the table.
func (m *Manager) removeLocked(e *entry, reason string) (Lease, error) {
	if err := m.store.Delete(e.Key()); err != nil {
		m.bump(func(c *Counters) { c.StoreFailures++ })
		return Lease{}, fmt.Errorf("%w: deleting stored lease: %w", ErrFailure, err)
	}
	if err := m.fw.Remove(e.Key()); err != nil {
		// The store no longer has the lease; Run re-syncs the firewall
		// until the stale rule is gone.
		m.log.Error("removing pinhole; will re-sync the firewall", "key", keyString(e.Key()), "err", err)
		m.fwDirty = true
	}
	return m.removed(e, reason), nil
}

// removed takes e, gone from the store and the firewall, out of the table,
// and counts, reports and logs its removal.
func (m *Manager) removed(e *entry, reason string) Lease {
	m.mu.Lock()
	m.deleteLocked(e)
	if reason == ReasonExpired {
		m.counters.Expired++
	} else {
		m.counters.Deleted++
	}
	m.mu.Unlock()
	m.noteLocked(Event{Kind: Removed, Lease: e.Lease, Reason: reason})
	m.log.Info("mapping deleted", "proto", e.Proto.String(), "ext_port", e.ExternalPort,
		"int", netip.AddrPortFrom(e.InternalAddr, e.InternalPort).String(), "client", e.Client.String(),
		"reason", reason)
	return e.Lease
}

// DeleteAll removes every lease of proto that client made with origin (the
// NAT-PMP "delete all" request). It returns how many were removed.
func (m *Manager) DeleteAll(client netip.Addr, proto firewall.Proto, origin Origin) (int, error) {
	m.opMu.Lock()
	defer m.unlockOp()
	var victims []*entry
	for _, e := range m.byHost[client] {
		if e.Proto == proto && e.Origin == origin {
			victims = append(victims, e)
		}
	}
	for i, e := range victims {
		if _, err := m.removeLocked(e, "released by client (all)"); err != nil {
			return i, err
		}
	}
	return len(victims), nil
}

// Delete removes the lease with key k at an administrator's request.
func (m *Manager) Delete(k Key, reason string) (Lease, error) {
	m.opMu.Lock()
	defer m.unlockOp()
	e := m.byKey[k]
	if e == nil {
		return Lease{}, fmt.Errorf("%w: %s/%d", ErrNotFound, k.Proto, k.ExternalPort)
	}
	return m.removeLocked(e, reason)
}

// Get returns the lease with key k.
func (m *Manager) Get(k Key) (Lease, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e := m.byKey[k]
	if e == nil {
		return Lease{}, false
	}
	return e.Lease, true
}

// List returns every lease, ordered by protocol and external port.
func (m *Manager) List() []Lease {
	m.mu.RLock()
	out := make([]Lease, 0, len(m.byKey))
	for _, e := range m.byKey {
		out = append(out, e.Lease)
	}
	m.mu.RUnlock()
	sortLeases(out)
	return out
}

// sortLeases orders ls by protocol and external port.
func sortLeases(ls []Lease) {
	slices.SortFunc(ls, func(a, b Lease) int {
		if a.Proto != b.Proto {
			return int(a.Proto) - int(b.Proto)
		}
		return int(a.ExternalPort) - int(b.ExternalPort)
	})
}

// ClientLeases returns the leases that client requested (Lease.Client),
// ordered as List orders them. Its cost is that client's lease count, not
// the table's.
func (m *Manager) ClientLeases(client netip.Addr) []Lease {
	m.mu.RLock()
	out := make([]Lease, 0, len(m.byHost[client]))
	for _, e := range m.byHost[client] {
		out = append(out, e.Lease)
	}
	m.mu.RUnlock()
	sortLeases(out)
	return out
}

// Len returns the number of leases.
func (m *Manager) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.byKey)
}

// Counters returns the totals since start.
func (m *Manager) Counters() Counters {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.counters
}

// Pinholes returns the pinholes every lease needs, for a firewall Sync.
func (m *Manager) Pinholes() []firewall.Pinhole {
	m.mu.RLock()
	defer m.mu.RUnlock()
	out := make([]firewall.Pinhole, 0, len(m.byKey))
	for _, e := range m.byKey {
		out = append(out, e.Pinhole())
	}
	return out
}

// Restore loads leases read from the store into an empty table. A lease whose
// stored expiry has passed is dropped from the store. Because routers without
// a real-time clock may boot with a wrong clock, a restored lease is given at
// most its granted lifetime from now, whatever the stored expiry says. It does
// not touch the firewall: call Pinholes and the backend's Sync afterwards.
func (m *Manager) Restore(ls []Lease) (restored, dropped int, err error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	now := m.clk.Now()
	for _, l := range ls {
		left := l.Expires.Sub(wall(now))
		if left > l.Lifetime {
			left = l.Lifetime
		}
		k := l.Key()
		_, dup := m.byKey[k]
		_, dupInt := m.byInt[internalKeyOf(l.InternalAddr, l.Proto, l.InternalPort)]
		if left <= 0 || dup || dupInt || l.Lifetime <= 0 || !l.InternalAddr.Is4() {
			if derr := m.store.Delete(k); derr != nil {
				err = fmt.Errorf("dropping expired lease %s: %w", keyString(k), derr)
			}
			dropped++
			continue
		}
		e := &entry{Lease: l, deadline: m.mono(now.Add(left)), stored: storedAs(l.Expires)}
		e.Expires = wall(now).Add(left)
		m.insert(e)
		restored++
	}
	return restored, dropped, err
}

func (m *Manager) insert(e *entry) {
	m.mu.Lock()
	m.byKey[e.Key()] = e
	m.byInt[internalKeyOf(e.InternalAddr, e.Proto, e.InternalPort)] = e
	hs := m.byHost[e.Client]
	if hs == nil {
		hs = make(map[Key]*entry)
		m.byHost[e.Client] = hs
	}
	hs[e.Key()] = e
	heap.Push(&m.expiries, e)
	m.mu.Unlock()
	m.kick()
}

func (m *Manager) deleteLocked(e *entry) {
	delete(m.byKey, e.Key())
	delete(m.byInt, internalKeyOf(e.InternalAddr, e.Proto, e.InternalPort))
	if hs := m.byHost[e.Client]; hs != nil {
		if delete(hs, e.Key()); len(hs) == 0 {
			delete(m.byHost, e.Client)
		}
	}
	if e.idx >= 0 {
		heap.Remove(&m.expiries, e.idx)
	}
}

// noteLocked queues ev for onChange, with the table's size now. Callers
// hold opMu; unlockOp hands the queue out.
func (m *Manager) noteLocked(ev Event) {
	if m.onChange == nil {
		return
	}
	ev.Count = len(m.byKey)
	m.evMu.Lock()
	m.events = append(m.events, ev)
	m.evMu.Unlock()
}

// unlockOp releases opMu, then hands the events made under it to onChange.
func (m *Manager) unlockOp() {
	m.opMu.Unlock()
	m.deliver()
}

// deliver calls onChange for every queued event, in order, with no lock
// held. One goroutine delivers at a time; one that finds another
// delivering leaves its events to it, so events made in one order are
// reported in that order even when the goroutines that made them race to
// report them (and onChange may itself change leases). onChange must not
// panic.
func (m *Manager) deliver() {
	if m.onChange == nil {
		return
	}
	m.evMu.Lock()
	if m.delivering {
		m.evMu.Unlock()
		return
	}
	m.delivering = true
	for {
		evs := m.events
		m.events = nil
		if len(evs) == 0 {
			m.delivering = false
			m.evMu.Unlock()
			return
		}
		m.evMu.Unlock()
		for _, ev := range evs {
			m.onChange(ev)
		}
		m.evMu.Lock()
	}
}

func (m *Manager) kick() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// ExpireDue removes every lease whose deadline has passed and returns how
// many it removed. A lease whose removal fails stays and is tried again after
// retryDelay; the others are still removed. Run calls it; tests call it after
// moving a fake clock.
func (m *Manager) ExpireDue() (int, error) {
	m.opMu.Lock()
	defer m.unlockOp()
	now := m.mono(m.clk.Now())
	var due []*entry
	for _, e := range m.expiries {
		if e.deadline <= now {
			due = append(due, e)
		}
	}
	n := 0
	var errs []error
	for _, e := range due {
		if _, err := m.removeLocked(e, ReasonExpired); err != nil {
			m.log.Error("expiring lease", "key", keyString(e.Key()), "err", err)
			errs = append(errs, err)
			continue
		}
		n++
	}
	return n, errors.Join(errs...)
}

// SyncFirewall makes the firewall hold exactly the pinholes of the current
// leases (start-up, reconcile, recovery after a failed change). It holds the
// change lock, so no lease changes meanwhile.
func (m *Manager) SyncFirewall() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if err := m.fw.Sync(m.Pinholes()); err != nil {
		m.fwDirty = true
		return err
	}
	m.fwDirty = false
	return nil
}

func (m *Manager) firewallDirty() bool {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	return m.fwDirty
}

// retryDelay is how long Run waits after a failed expiry or firewall sync
// before trying again, so a broken store or firewall does not spin the CPU.
const retryDelay = 5 * time.Second

// nextDeadline returns the earliest lease deadline, or false if there are no
// leases.
func (m *Manager) nextDeadline() (time.Time, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if len(m.expiries) == 0 {
		return time.Time{}, false
	}
	return m.base.Add(time.Duration(m.expiries[0].deadline)), true
}

// Checkpoint writes the expiry of every lease renewed since it was last
// stored, in one store write. Run calls it every CheckpointInterval and on
// shutdown.
func (m *Manager) Checkpoint() error {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	var dirty []*entry
	for _, e := range m.byKey {
		if e.stored != storedAs(e.Expires) {
			dirty = append(dirty, e)
		}
	}
	if len(dirty) == 0 {
		return nil
	}
	ls := make([]Lease, len(dirty))
	for i, e := range dirty {
		ls[i] = e.Lease
	}
	if err := m.store.PutExpiries(ls); err != nil {
		return fmt.Errorf("checkpointing %d expiries: %w", len(ls), err)
	}
	for _, e := range dirty {
		e.stored = storedAs(e.Expires)
	}
	m.log.Debug("checkpoint written", "leases", len(ls))
	return nil
}

// idleWait is how long Run sleeps when there are no leases; any new lease
// wakes it earlier.
const idleWait = time.Hour

// Run expires leases at their deadline and checkpoints renewals until ctx is
// done, then writes a last checkpoint. It is the Manager's one expiry
// goroutine.
func (m *Manager) Run(ctx context.Context) {
	lastCheckpoint := m.clk.Now()
	jumps := m.newJumpWatch() // wall-clock steps: see clockjump.go
	defer jumps.stop()
	var failing bool
	for {
		wait := idleWait
		if d, ok := m.nextDeadline(); ok {
			wait = d.Sub(m.clk.Now())
		}
		if failing {
			wait = max(wait, retryDelay)
		}
		if until := lastCheckpoint.Add(m.checkpointInterval()).Sub(m.clk.Now()); until < wait {
			wait = until
		}
		t := m.clk.NewTimer(max(wait, 0))
		select {
		case <-ctx.Done():
			t.Stop()
			jumps.check() // a step just before shutdown still reaches the store
			if err := m.Checkpoint(); err != nil {
				m.log.Error("final checkpoint", "err", err)
			}
			return
		case <-jumps.C():
			t.Stop()
			jumps.check()
			continue
		case <-m.wake:
			t.Stop()
		case <-t.C():
		}
		_, err := m.ExpireDue()
		failing = err != nil
		if m.firewallDirty() {
			if err := m.SyncFirewall(); err != nil {
				m.log.Error("re-syncing firewall", "err", err)
				failing = true
			}
		}
		if now := m.clk.Now(); now.Sub(lastCheckpoint) >= m.checkpointInterval() {
			if err := m.Checkpoint(); err != nil {
				m.log.Error("checkpoint", "err", err)
			}
			lastCheckpoint = now
		}
	}
}

func (m *Manager) refuse(r Request, err error) error {
	m.bump(func(c *Counters) { c.Refused++ })
	m.log.Info("mapping refused", "proto", r.Proto.String(),
		"int", netip.AddrPortFrom(r.InternalAddr, r.InternalPort).String(), "client", r.Client.String(),
		"suggested", r.SuggestedPort, "via", string(r.Origin), "reason", err.Error())
	return err
}

// failedPart names what refused a request's change: the firewall or the
// store. Each has its own counter.
type failedPart int

const (
	firewallFailed failedPart = iota
	storeFailed
)

// fail logs a request that failed because part refused its change, and
// counts it.
func (m *Manager) fail(r Request, part failedPart, err error) error {
	m.bump(func(c *Counters) {
		if part == storeFailed {
			c.StoreFailures++
		} else {
			c.FirewallFailures++
		}
	})
	m.log.Error("mapping failed", "proto", r.Proto.String(),
		"int", netip.AddrPortFrom(r.InternalAddr, r.InternalPort).String(), "client", r.Client.String(), "err", err)
	return fmt.Errorf("%w: %w", ErrFailure, err)
}

func (m *Manager) bump(f func(*Counters)) {
	m.mu.Lock()
	f(&m.counters)
	m.mu.Unlock()
}

// wall strips the monotonic reading so that the time can be stored and
// compared with stored times.
func wall(t time.Time) time.Time { return t.Round(0) }

func keyString(k Key) string { return fmt.Sprintf("%s/%d", k.Proto, k.ExternalPort) }

// expiryHeap orders entries by deadline.
type expiryHeap []*entry

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].deadline < h[j].deadline }
func (h expiryHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}
func (h *expiryHeap) Push(x any) {
	e := x.(*entry)
	e.idx = len(*h)
	*h = append(*h, e)
}
func (h *expiryHeap) Pop() any {
	old := *h
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.idx = -1
	*h = old[:len(old)-1]
	return e
}
