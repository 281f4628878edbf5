package lease

// Group commit. Every create, change and delete must be on disk before its
// reply goes out, and a durable write (an fsync) costs about a millisecond
// on a router's flash; the kernel change costs a netlink round trip. Done one
// request at a time that caps the request rate near 1,000/s however fast the
// rest is. So concurrent Map calls are combined: one of the callers (the
// leader) takes every request queued so far, decides each in arrival order
// as if they came one after another, writes all their store changes in one
// transaction while it makes all their firewall changes in one batch, then
// updates the table and wakes the callers. A request that could see an earlier one
// of the same batch differently than if it came alone (the same internal
// endpoint twice, or a suggested port another request in the batch frees)
// ends the batch and goes first in the next.
//
// The table is changed only after both writes succeeded, so readers never
// see a lease that is not on disk and in the kernel. If the store write
// fails, every request in the batch that needed it fails, as it would have
// alone; if the firewall batch fails, its changes are made again one by one
// so that only the requests whose own change fails fail.

import (
	"container/heap"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
)

// maxBatch bounds the requests decided together, so that one batch's store
// transaction and netlink message stay small. In practice batches are
// smaller: the server reads each of its sockets on one goroutine, so a
// batch holds at most one request per socket (see server/socket.go).
const maxBatch = 64

// pending is one Map call waiting for its batch.
type pending struct {
	r    Request
	done chan struct{} // closed when l and err are set
	l    Lease
	err  error
}

func (p *pending) finish(l Lease, err error) {
	p.l, p.err = l, err
	close(p.done)
}

// batchFirewall is implemented by firewalls that make several changes in
// one transaction (firewall.Backend.Apply).
type batchFirewall interface {
	Apply(add []firewall.Pinhole, remove []firewall.Key) error
}

// submit queues p and returns when its batch is done, leading batches while
// no other caller does.
func (m *Manager) submit(p *pending) (Lease, error) {
	m.qMu.Lock()
	m.queue = append(m.queue, p)
	m.qMu.Unlock()
	for {
		select {
		case <-p.done:
			return p.l, p.err
		case m.lead <- struct{}{}:
		}
		// The leader runs batches until its own request is done; the
		// callers still waiting then take over one by one.
		for !isDone(p) {
			m.runBatch()
		}
		<-m.lead
		// Events go out with no token held: onChange may call Map.
		m.deliver()
		return p.l, p.err
	}
}

// Queued reports how many Map calls wait for their batch to be decided.
func (m *Manager) Queued() int {
	m.qMu.Lock()
	defer m.qMu.Unlock()
	return len(m.queue)
}

func isDone(p *pending) bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// changeKind is what a request does to the table.
type changeKind int

const (
	chNone   changeKind = iota // decided without a change (refused, nothing to delete)
	chCreate                   // new lease: store, firewall, table
	chRenew                    // renewal: table; store (and firewall) when put (and fw) are set
	chRemove                   // delete: store, firewall, table
)

// change is one request's planned effect.
type change struct {
	p    *pending
	kind changeKind
	e    *entry // the new entry (create) or the existing one
	next Lease  // renew: the lease as renewed
	// put: the store must be written (create, or a renewal that changed
	// the description or filters); fw: the pinhole must change.
	put, fw bool
	life    time.Duration // granted lifetime (create, renew)
	now     time.Time     // when it was decided (renew)
	reason  string        // remove: why
	refusal error         // remove: the request's error once the lease is gone (policy)
	failed  bool          // a write failed; p is finished
}

// batchView is what the changes planned so far in a batch will do to the
// table, for the requests after them to see.
type batchView struct {
	internal map[internalKey]bool // endpoints with a planned change
	taken    map[Key]bool         // external ports planned for new leases
	freed    map[Key]bool         // external ports planned to be freed (not reused in the batch)
	perHost  map[netip.Addr]int   // new leases planned per host, less removals planned
	created  int                  // new leases planned
	removed  int                  // removals planned
}

// free plans the removal of e.
func (v *batchView) free(e *entry) {
	v.freed[e.Key()] = true
	v.perHost[e.Client]--
	v.removed++
}

// runBatch takes up to maxBatch queued requests and carries them out. The
// caller is the leader; it delivers the batch's events once it has handed
// the lead on.
func (m *Manager) runBatch() {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	m.qMu.Lock()
	n := min(len(m.queue), maxBatch)
	ps := slices.Clone(m.queue[:n])
	m.qMu.Unlock()
	if n == 0 {
		return
	}
	v := batchView{internal: map[internalKey]bool{}, taken: map[Key]bool{}, freed: map[Key]bool{}, perHost: map[netip.Addr]int{}}
	var cs []*change
	for _, p := range ps {
		c, cut := m.plan(p, &v)
		if cut {
			break
		}
		cs = append(cs, c)
	}
	// The requests taken leave the queue; one that ended the batch stays
	// first for the next.
	m.qMu.Lock()
	m.queue = slices.Delete(m.queue, 0, len(cs))
	m.qMu.Unlock()
	m.write(cs)
	for _, c := range cs {
		if !c.failed {
			m.finalize(c)
		}
	}
}

// plan decides p's request against the table and the batch so far. cut is
// true when the request must wait for the next batch.
func (m *Manager) plan(p *pending, v *batchView) (c *change, cut bool) {
	r := p.r
	ik := internalKeyOf(r.InternalAddr, r.Proto, r.InternalPort)
	if v.internal[ik] {
		return nil, true
	}
	if r.SuggestedPort != 0 && v.freed[Key{Proto: r.Proto, ExternalPort: r.SuggestedPort}] {
		return nil, true
	}
	c = &change{p: p}
	refuse := func(err error) (*change, bool) {
		p.finish(Lease{}, m.refuse(r, err))
		return c, false
	}
	e := m.byInt[ik]
	if e != nil {
		if err := m.authorize(e, r); err != nil {
			return refuse(err)
		}
	}
	if r.Lifetime == 0 {
		if e == nil {
			p.finish(Lease{}, nil)
			return c, false
		}
		v.internal[ik] = true
		v.free(e)
		c.kind, c.e, c.reason = chRemove, e, "released by client"
		return c, false
	}
	pol := m.currentPolicy()
	now := m.clk.Now()
	life := m.ClampLifetime(r.Lifetime)
	if e != nil {
		v.internal[ik] = true
		if d := pol.Check(m.policyRequest(r, e.ExternalPort)); !d.Allow {
			// The policy changed since the lease was granted.
			v.free(e)
			c.kind, c.e, c.reason = chRemove, e, "no longer allowed by policy"
			c.refusal = fmt.Errorf("%w: %s", ErrDenied, d.Reason)
			return c, false
		}
		next := e.Lease
		next.Lifetime = life
		next.Renewed = wall(now)
		next.Expires = wall(now).Add(life)
		if r.HasDescription {
			next.Description = r.Description
		}
		if r.Origin == OriginPCP {
			next.Filters = slices.Clone(r.Filters)
		}
		c.kind, c.e, c.next, c.life, c.now = chRenew, e, next, life, now
		c.fw = !slices.Equal(next.Filters, e.Filters)
		c.put = c.fw || next.Description != e.Description
		return c, false
	}
	// A refusal that the batch's own plans caused waits for the next
	// batch: if those plans fail to be written, it would be wrong. So
	// does a request whose natural port (the internal one) the batch
	// frees.
	batchMade := v.created > 0 || v.removed > 0
	if v.freed[Key{Proto: r.Proto, ExternalPort: r.InternalPort}] {
		return nil, true
	}
	if n := len(m.byKey) + v.created - v.removed; n >= m.cfg.MaxLeases {
		if batchMade {
			return nil, true
		}
		return refuse(fmt.Errorf("%w: %d leases, the configured maximum", ErrNoResources, n))
	}
	if n := len(m.byHost[r.Client]) + v.perHost[r.Client]; n >= m.cfg.MaxPerHost {
		if batchMade {
			return nil, true
		}
		return refuse(fmt.Errorf("%w: %s holds %d leases", ErrQuota, r.Client, n))
	}
	ranges := pol.ExtRanges(m.policyRequest(r, 0))
	if len(ranges) == 0 {
		d := pol.Check(m.policyRequest(r, r.SuggestedPort))
		return refuse(fmt.Errorf("%w: %s", ErrDenied, d.Reason))
	}
	ext, err := m.allocate(r, ranges, func(k Key) bool { return v.taken[k] || v.freed[k] })
	if err != nil {
		if batchMade {
			return nil, true
		}
		return refuse(err)
	}
	e = &entry{Lease: Lease{
		Proto:        r.Proto,
		ExternalPort: ext,
		InternalAddr: r.InternalAddr,
		InternalPort: r.InternalPort,
		Client:       r.Client,
		Origin:       r.Origin,
		Nonce:        r.Nonce,
		Auth:         r.Auth,
		Description:  r.Description,
		Filters:      slices.Clone(r.Filters),
		Lifetime:     life,
		Created:      wall(now),
		Renewed:      wall(now),
	}, deadline: m.mono(now.Add(life))}
	e.Expires = wall(now).Add(life)
	v.internal[ik] = true
	v.taken[e.Key()] = true
	v.perHost[r.Client]++
	v.created++
	c.kind, c.e, c.life, c.put, c.fw = chCreate, e, life, true, true
	return c, false
}

// write makes the batch's store changes in one transaction and, at the
// same time, its firewall changes in one batch. Changes whose write failed
// are marked failed with their request finished.
func (m *Manager) write(cs []*change) {
	var puts []Lease
	var dels []Key
	var add []firewall.Pinhole
	var remove []firewall.Key
	for _, c := range cs {
		switch {
		case c.kind == chCreate:
			puts = append(puts, c.e.Lease)
			add = append(add, c.e.Pinhole())
		case c.kind == chRenew && c.put:
			puts = append(puts, c.next)
			if c.fw {
				add = append(add, c.next.Pinhole())
			}
		case c.kind == chRemove:
			dels = append(dels, c.e.Key())
			remove = append(remove, c.e.Key())
		}
	}
	if len(puts)+len(dels) == 0 {
		return // renewals only: nothing to write
	}
	// The store write and the firewall batch are independent and run at
	// once, so a request waits for the slower of the two, not their sum.
	// Neither order matters for a crash: a start-up installs exactly what
	// the store holds, and no reply went out before both were done.
	var fwErr error
	fwDone := make(chan struct{})
	b, batched := m.fw.(batchFirewall)
	if batched && len(add)+len(remove) > 0 {
		go func() {
			defer close(fwDone)
			fwErr = b.Apply(add, remove)
		}()
	} else {
		close(fwDone)
	}
	storeErr := m.store.Apply(puts, dels)
	<-fwDone
	if storeErr != nil {
		for _, c := range cs {
			switch {
			case c.kind == chCreate || c.kind == chRenew && c.put:
				c.failed = true
				c.p.finish(Lease{}, m.fail(c.p.r, storeFailed, fmt.Errorf("storing lease: %w", storeErr)))
			case c.kind == chRemove:
				c.failed = true
				m.bump(func(c *Counters) { c.StoreFailures++ })
				c.p.finish(Lease{}, fmt.Errorf("%w: deleting stored lease: %w", ErrFailure, storeErr))
			}
		}
		if batched && len(add)+len(remove) > 0 {
			// The firewall may hold changes the store refused: put
			// it back to the table, which did not change.
			if err := m.fw.Sync(m.Pinholes()); err != nil {
				m.log.Error("re-syncing firewall after a failed store write", "err", err)
				m.fwDirty = true
				m.kick()
			}
		}
		return
	}
	if batched && fwErr == nil {
		return
	}
	if fwErr != nil {
		m.log.Debug("firewall batch failed, changing one by one", "changes", len(add)+len(remove), "err", fwErr)
		// The batch may have made part of its changes, some of which
		// the changes one by one may then undo only in the store: Run
		// re-syncs the firewall to the table.
		m.fwDirty = true
		m.kick()
	}
	for _, c := range cs {
		m.writeFirewallOne(c)
	}
}

// writeFirewallOne makes c's firewall change alone; if it fails, c's store
// change is undone and c fails, as a request alone would.
func (m *Manager) writeFirewallOne(c *change) {
	switch {
	case c.kind == chCreate:
		if err := m.fw.Add(c.e.Pinhole()); err != nil {
			if derr := m.store.Delete(c.e.Key()); derr != nil {
				m.log.Error("undoing stored lease after firewall failure", "key", keyString(c.e.Key()), "err", derr)
			}
			c.failed = true
			c.p.finish(Lease{}, m.fail(c.p.r, firewallFailed, fmt.Errorf("installing pinhole: %w", err)))
		}
	case c.kind == chRenew && c.fw:
		if err := m.fw.Add(c.next.Pinhole()); err != nil {
			if perr := m.store.Put(c.e.Lease); perr != nil {
				m.log.Error("restoring stored lease after firewall failure", "key", keyString(c.e.Key()), "err", perr)
			}
			c.failed = true
			c.p.finish(Lease{}, m.fail(c.p.r, firewallFailed, fmt.Errorf("updating pinhole: %w", err)))
		}
	case c.kind == chRemove:
		if err := m.fw.Remove(c.e.Key()); err != nil {
			// The store no longer has the lease; Run re-syncs the
			// firewall until the stale rule is gone.
			m.log.Error("removing pinhole; will re-sync the firewall", "key", keyString(c.e.Key()), "err", err)
			m.fwDirty = true
			m.kick()
		}
	}
}

// finalize applies c, whose writes succeeded, to the table and finishes its
// request.
func (m *Manager) finalize(c *change) {
	p, e := c.p, c.e
	switch c.kind {
	case chNone:
		// finished when planned
	case chCreate:
		e.stored = storedAs(e.Expires)
		m.insert(e)
		m.bump(func(c *Counters) { c.Created++ })
		m.noteLocked(Event{Kind: Created, Lease: e.Lease})
		via := string(e.Origin)
		if e.Auth != "" {
			via += " key " + e.Auth // the key's name, never its secret
		}
		m.log.Info("mapping created", "proto", e.Proto.String(), "ext_port", e.ExternalPort,
			"int", netip.AddrPortFrom(e.InternalAddr, e.InternalPort).String(), "client", e.Client.String(),
			"via", via, "lifetime", c.life.String(), "desc", e.Description)
		p.finish(e.Lease, nil)
	case chRenew:
		m.mu.Lock()
		e.Lease = c.next
		e.deadline = m.mono(c.now.Add(c.life))
		if c.put {
			e.stored = storedAs(c.next.Expires)
		}
		heap.Fix(&m.expiries, e.idx)
		m.counters.Renewed++
		m.mu.Unlock()
		m.noteLocked(Event{Kind: Renewed, Lease: e.Lease})
		m.log.Debug("mapping renewed", "proto", e.Proto.String(), "ext_port", e.ExternalPort,
			"int", netip.AddrPortFrom(e.InternalAddr, e.InternalPort).String(), "client", e.Client.String(),
			"lifetime", c.life.String())
		m.kick()
		p.finish(e.Lease, nil)
	case chRemove:
		l := m.removed(e, c.reason)
		if c.refusal != nil {
			p.finish(Lease{}, m.refuse(p.r, c.refusal))
		} else {
			p.finish(l, nil)
		}
	}
}
