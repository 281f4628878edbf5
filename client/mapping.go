package client

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"math"
	mrand "math/rand/v2"
	"net/netip"
	"strconv"
	"sync"
	"time"
)

// Protocol is a transport protocol, by its IANA protocol number.
type Protocol uint8

// The protocols a mapping can be for.
const (
	TCP Protocol = 6
	UDP Protocol = 17
)

// String returns "tcp", "udp" or "proto(N)".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto(" + strconv.Itoa(int(p)) + ")"
}

// MapRequest describes a mapping to create with Client.Map.
type MapRequest struct {
	Protocol Protocol // TCP or UDP
	// InternalAddr is the LAN address the gateway forwards to. The zero
	// Addr means the host's address toward the gateway. When set, requests
	// are sent from it, since both protocols map the requester's address.
	InternalAddr netip.Addr
	InternalPort uint16 // required
	// SuggestedExternalPort is the external port to ask for; 0 means the
	// same as InternalPort. The gateway may grant another one: always use
	// Mapping.External.
	SuggestedExternalPort uint16
	// Lifetime is the requested lifetime; 0 means Config.Lifetime. It is
	// sent in whole seconds, rounded up.
	Lifetime time.Duration
	// Description is the PCP DESCRIPTION text; "" means
	// Config.Description.
	Description string
}

// EventKind says what happened to a mapping.
type EventKind int

const (
	// Renewed: the gateway extended the mapping; the external address
	// and port are unchanged.
	Renewed EventKind = iota + 1
	// Changed: the external address or port differs from the one before
	// (after a renewal, or following a Restored event). Event.External is
	// the new one.
	Changed
	// Lost: the gateway no longer holds the mapping: it refused a renewal,
	// the mapping expired without a successful renewal, or the gateway
	// lost its state (Err is ErrStateLost). The Client keeps trying to
	// re-create it. Event.External is the address that was lost.
	Lost
	// Restored: the gateway holds the mapping again after Lost, or, for a
	// mapping that Listen returned unmapped because of AllowUnmapped, for
	// the first time. When the loss was found by the very request that
	// re-created the mapping, Restored comes without a Lost before it.
	Restored
	// Released: the mapping was released (Release, Close) and will get no
	// more events; Err is the deletion's error, if any. The Events
	// channel is closed after it.
	Released
)

// String returns the kind's name, such as "renewed".
func (k EventKind) String() string {
	switch k {
	case Renewed:
		return "renewed"
	case Changed:
		return "changed"
	case Lost:
		return "lost"
	case Restored:
		return "restored"
	case Released:
		return "released"
	}
	return "EventKind(" + strconv.Itoa(int(k)) + ")"
}

// Event is something that happened to a mapping in the background.
type Event struct {
	Kind     EventKind
	External netip.AddrPort // the external address and port concerned
	Err      error          // the failure, for Lost and Released
	Time     time.Time      // when it happened (Config.Now)
}

// eventBuffer is the capacity of a Mapping's Events channel.
const eventBuffer = 16

// Mapping is a port mapping held at the gateway and kept alive by the
// Client until Release or Client.Close. Its methods are safe for concurrent
// use.
type Mapping struct {
	c         *Client
	proto     Protocol
	nonce     [12]byte // one per mapping, for its whole life (RFC 6887 section 11.1)
	reqAddr   netip.Addr
	port      uint16
	suggested uint16
	lifetime  uint32
	desc      string

	events chan Event
	kick   chan struct{}   // tells run to look at next again
	sem    chan struct{}   // one exchange at a time for this mapping
	ctx    context.Context // ends at Release
	cancel context.CancelFunc
	done   chan struct{} // closed when run returns

	mu       sync.Mutex
	internal netip.AddrPort
	external netip.AddrPort // zero while lost
	last     netip.AddrPort // last granted external, kept while lost
	expiry   time.Time
	next     time.Time // when run acts next
	lost     bool      // the gateway does not hold the mapping
	err      error     // last failure; nil after a success
	backoff  time.Duration
	released bool
	closed   bool // events closed
}

func (c *Client) newMapping(req MapRequest) (*Mapping, error) {
	m := &Mapping{
		c:         c,
		proto:     req.Protocol,
		reqAddr:   req.InternalAddr.Unmap(),
		port:      req.InternalPort,
		suggested: req.SuggestedExternalPort,
		lifetime:  seconds(req.Lifetime, c.cfg.Lifetime),
		desc:      req.Description,
		events:    make(chan Event, eventBuffer),
		kick:      make(chan struct{}, 1),
		sem:       make(chan struct{}, 1),
		done:      make(chan struct{}),
	}
	if m.suggested == 0 {
		m.suggested = m.port
	}
	if m.desc == "" {
		m.desc = c.cfg.Description
	}
	m.internal = netip.AddrPortFrom(m.reqAddr, m.port)
	if _, err := readNonce(&m.nonce); err != nil {
		return nil, err
	}
	m.ctx, m.cancel = context.WithCancel(c.ctx)
	return m, nil
}

func readNonce(n *[12]byte) (int, error) {
	return rand.Read(n[:])
}

// seconds converts a requested lifetime to whole seconds, rounding up, with
// def (or DefaultLifetime) for 0.
func seconds(d, def time.Duration) uint32 {
	if d == 0 {
		d = def
	}
	if d == 0 {
		d = DefaultLifetime
	}
	s := math.Ceil(d.Seconds())
	return uint32(min(max(s, 1), math.MaxUint32))
}

// Map asks the gateway for a mapping and returns once it is granted. The
// Client then renews it in the background until Release or Close; watch
// Events for what happens later. A refusal is a *ResultError matching one
// of the ErrX sentinels; errors are wrapped as "client: map tcp port 8080:
// ...".
//
// ctx bounds the request. PCP retransmits without limit (RFC 6887 section
// 8.1.1), so with a gateway that drops PCP silently only ctx ends the wait:
// give it a deadline. NAT-PMP gives up after nine attempts, about two
// minutes. The same holds for Renew, Protocol and ExternalAddr.
func (c *Client) Map(ctx context.Context, req MapRequest) (*Mapping, error) {
	m, err := c.mapping(ctx, req, false)
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	return m, nil
}

// mapping is Map, with errors prefixed "map tcp port 8080: " only. With
// keep, a failed first request still returns the mapping, lost, with a Lost
// event and re-creation attempts under way, along with the error.
func (c *Client) mapping(ctx context.Context, req MapRequest, keep bool) (*Mapping, error) {
	what := "map " + req.Protocol.String() + " port " + strconv.Itoa(int(req.InternalPort))
	if req.Protocol != TCP && req.Protocol != UDP {
		return nil, fmt.Errorf("%s: %w", what, ErrUnsupportedProtocol)
	}
	if req.InternalPort == 0 {
		return nil, fmt.Errorf("%s: internal port 0", what)
	}
	if c.isClosed() {
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	m, err := c.newMapping(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m.mu.Lock()
	p := m.paramsLocked(m.lifetime)
	m.mu.Unlock()
	ans, err := c.request(ctx, p, m)
	if err != nil && !keep {
		return nil, fmt.Errorf("%s: %w", what, err)
	}
	m.mu.Lock()
	if err == nil {
		m.grantLocked(ans, c.now())
	} else {
		m.lost, m.err = true, err
		m.next = c.now().Add(m.backoffLocked())
		m.emitLocked(Lost, err)
	}
	m.mu.Unlock()
	if !c.register(m) {
		m.cancel()
		if err == nil {
			// Closed while mapping: undo it.
			p.lifetime = 0
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.releaseTimeout)
			c.request(dctx, p, nil)
			cancel()
		}
		return nil, fmt.Errorf("%s: %w", what, ErrClosed)
	}
	c.startAnnounce()
	if err != nil {
		return m, fmt.Errorf("%s: %w", what, err)
	}
	return m, nil
}

// paramsLocked returns the request for m with lifetime (0 deletes). A
// renewal or re-creation suggests the external address and port granted
// last (RFC 6887 section 11.2.1, RFC 6886 section 3.3).
func (m *Mapping) paramsLocked(lifetime uint32) mapParams {
	p := mapParams{
		proto:     m.proto,
		nonce:     m.nonce,
		laddr:     m.reqAddr,
		port:      m.port,
		suggested: m.suggested,
		lifetime:  lifetime,
		desc:      m.desc,
	}
	if m.last.IsValid() {
		p.suggested, p.suggestedAddr = m.last.Port(), m.last.Addr()
	}
	return p
}

// renewDelay returns when to renew a mapping granted for lifetime: a random
// point between 1/2 and 5/8 of it (RFC 6887 section 11.2.1), r being uniform
// in [0,1).
func renewDelay(lifetime time.Duration, r float64) time.Duration {
	lo, hi := lifetime/2, lifetime*5/8
	return lo + time.Duration(r*float64(hi-lo))
}

// grantLocked records a successful answer and schedules the renewal.
func (m *Mapping) grantLocked(ans answer, now time.Time) {
	life := time.Duration(max(ans.lifetime, 1)) * time.Second
	m.internal = ans.internal
	m.external, m.last = ans.external, ans.external
	m.expiry = now.Add(life)
	m.next = now.Add(renewDelay(life, mrand.Float64()))
	m.lost, m.err, m.backoff = false, nil, 0
}

// backoffLocked returns the next retry delay, doubling from retryMin to
// retryMax.
func (m *Mapping) backoffLocked() time.Duration {
	if m.backoff == 0 {
		m.backoff = m.c.retryMin
	} else {
		m.backoff = min(2*m.backoff, m.c.retryMax)
	}
	return m.backoff
}

// apply records the outcome of a renewal or re-creation, emits the events
// and schedules the next attempt.
func (m *Mapping) apply(ans answer, err error) {
	now := m.c.now()
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.released {
		return
	}
	if err == nil {
		wasLost := m.lost || ans.lost
		prev := m.last
		m.grantLocked(ans, now)
		changed := prev.IsValid() && prev != ans.external
		switch {
		case wasLost:
			m.emitLocked(Restored, nil)
			if changed {
				m.emitLocked(Changed, nil)
			}
		case changed:
			m.emitLocked(Changed, nil)
		default:
			m.emitLocked(Renewed, nil)
		}
		return
	}
	m.err = err
	var re *ResultError
	isResult := errors.As(err, &re)
	gone := (isResult && !re.transient()) || ans.lost || !now.Before(m.expiry)
	if gone && !m.lost {
		m.lost, m.external = true, netip.AddrPort{}
		m.emitLocked(Lost, err)
	}
	delay := m.backoffLocked()
	if isResult && re.Lifetime > 0 {
		delay = max(delay, min(time.Duration(re.Lifetime)*time.Second, maxErrorWait))
	}
	if !m.lost {
		// Still held: try again before it expires.
		delay = min(delay, max(m.expiry.Sub(now), 0))
	}
	m.next = now.Add(delay)
	m.c.log.Debug("mapping refresh failed", "proto", m.proto.String(), "port", m.port, "lost", m.lost, "retry_in", delay, "err", err)
}

// markLost records that the gateway lost the mapping (cause) and schedules
// its re-creation after delay.
func (m *Mapping) markLost(cause error, delay time.Duration) {
	m.mu.Lock()
	if m.released {
		m.mu.Unlock()
		return
	}
	if !m.lost {
		m.lost, m.err = true, cause
		m.external = netip.AddrPort{}
		m.emitLocked(Lost, cause)
	}
	m.backoff = 0
	m.next = m.c.now().Add(delay)
	m.mu.Unlock()
	m.poke()
}

// refreshAfter schedules a renewal after delay, to learn a changed external
// address.
func (m *Mapping) refreshAfter(delay time.Duration) {
	m.mu.Lock()
	m.next = m.c.now().Add(delay)
	m.mu.Unlock()
	m.poke()
}

func (m *Mapping) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

// emitLocked queues an event without blocking: when the buffer is full the
// oldest event is dropped, so a slow reader sees the latest state.
func (m *Mapping) emitLocked(kind EventKind, err error) {
	if m.closed {
		return
	}
	ext := m.external
	if kind == Lost || kind == Released {
		ext = m.last
	}
	ev := Event{Kind: kind, External: ext, Err: err, Time: m.c.now()}
	for range 2 {
		select {
		case m.events <- ev:
			return
		default:
		}
		select {
		case <-m.events:
		default:
		}
	}
}

// acquire takes the mapping's exchange slot; it fails when ctx ends first.
func (m *Mapping) acquire(ctx context.Context) bool {
	select {
	case m.sem <- struct{}{}:
		return true
	case <-ctx.Done():
		return false
	}
}

func (m *Mapping) releaseSlot() { <-m.sem }

// run is the mapping's goroutine, owned by the Client: it renews or
// re-creates the mapping at m.next until Release.
func (m *Mapping) run() {
	defer m.c.wg.Done()
	defer close(m.done)
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		m.mu.Lock()
		d := m.next.Sub(m.c.now())
		m.mu.Unlock()
		t.Reset(max(d, 0))
		select {
		case <-m.ctx.Done():
			return
		case <-m.kick:
			continue
		case <-t.C:
		}
		m.refresh()
	}
}

// refresh renews the mapping or, when lost, re-creates it. A renewal is
// retransmitted until the mapping expires (RFC 6887 section 11.2.1); a
// re-creation attempt is bounded by recreateTimeout.
func (m *Mapping) refresh() {
	if !m.acquire(m.ctx) {
		return
	}
	m.mu.Lock()
	p := m.paramsLocked(m.lifetime)
	lost, left := m.lost, m.expiry.Sub(m.c.now())
	m.mu.Unlock()
	bound := m.c.recreateTimeout
	if !lost && left > 0 {
		bound = left
	}
	ctx, cancel := context.WithTimeout(m.ctx, bound)
	ans, err := m.c.request(ctx, p, m)
	cancel()
	m.releaseSlot()
	if m.ctx.Err() != nil {
		return // released meanwhile
	}
	m.apply(ans, err)
}

// External returns the external address and port the gateway granted. It
// is the zero AddrPort while the mapping is lost (and until a mapping made
// with AllowUnmapped is first granted). Always use it rather than the
// suggested port: the gateway may grant another, and a re-created mapping
// may get a new one.
func (m *Mapping) External() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.external
}

// Internal returns the internal address and port the gateway forwards to.
func (m *Mapping) Internal() netip.AddrPort {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.internal
}

// Protocol returns the mapping's transport protocol.
func (m *Mapping) Protocol() Protocol { return m.proto }

// Expiry returns when the granted lifetime ends unless renewed (in
// Config.Now's time). The Client renews well before it.
func (m *Mapping) Expiry() time.Time {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.expiry
}

// Err returns the last renewal or re-creation failure, nil once the gateway
// holds the mapping again.
func (m *Mapping) Err() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.err
}

// Events returns the mapping's event channel. It is buffered; when the
// reader falls behind, the oldest events are dropped so that the client
// never blocks. It is closed after the Released event.
func (m *Mapping) Events() <-chan Event { return m.events }

func (m *Mapping) what(verb string) string {
	return "client: " + verb + " " + m.proto.String() + " port " + strconv.Itoa(int(m.port))
}

// Renew renews the mapping now, or re-creates it if it was lost, and
// reschedules the next renewal. It returns ErrClosed after Release.
func (m *Mapping) Renew(ctx context.Context) error {
	if m.ctx.Err() != nil {
		return fmt.Errorf("%s: %w", m.what("renew"), ErrClosed)
	}
	// Release cancels a Renew in progress, so that it can delete at once.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(m.ctx, cancel)
	defer stop()
	if !m.acquire(ctx) {
		return fmt.Errorf("%s: %w", m.what("renew"), m.ctxErr(ctx))
	}
	m.mu.Lock()
	p := m.paramsLocked(m.lifetime)
	m.mu.Unlock()
	ans, err := m.c.request(ctx, p, m)
	m.releaseSlot()
	if err == nil || ctx.Err() == nil {
		// A failure caused by the caller's context says nothing about
		// the mapping; leave the schedule alone then.
		m.apply(ans, err)
		m.poke()
	}
	if err != nil {
		if m.ctx.Err() != nil {
			err = ErrClosed
		}
		return fmt.Errorf("%s: %w", m.what("renew"), err)
	}
	return nil
}

// ctxErr returns ErrClosed if the mapping was released, else ctx's cause.
func (m *Mapping) ctxErr(ctx context.Context) error {
	if m.ctx.Err() != nil {
		return ErrClosed
	}
	return context.Cause(ctx)
}

// Release deletes the mapping at the gateway and stops renewing it. It
// waits until ctx ends, or ReleaseTimeout when ctx has no deadline; if the
// gateway does not confirm by then, the mapping lapses at its expiry. The
// mapping counts as released either way: Events gets a Released event
// (with the deletion's error) and is closed. Release is idempotent; later
// calls return nil.
func (m *Mapping) Release(ctx context.Context) error {
	m.mu.Lock()
	if m.released {
		m.mu.Unlock()
		return nil
	}
	m.released = true
	granted := m.last.IsValid()
	p := m.paramsLocked(0)
	m.mu.Unlock()

	m.cancel()
	<-m.done
	m.c.unregister(m)

	var err error
	if granted {
		if _, ok := ctx.Deadline(); !ok {
			var cancel context.CancelFunc
			ctx, cancel = context.WithTimeout(ctx, m.c.releaseTimeout)
			defer cancel()
		}
		if m.acquire(ctx) {
			_, err = m.c.request(ctx, p, nil)
			m.releaseSlot()
		} else {
			err = context.Cause(ctx)
		}
	}
	m.mu.Lock()
	m.emitLocked(Released, err)
	m.external = netip.AddrPort{}
	m.closed = true
	close(m.events)
	m.mu.Unlock()
	if err != nil {
		m.c.log.Debug("releasing mapping", "proto", m.proto.String(), "port", m.port, "err", err)
		return fmt.Errorf("%s: %w", m.what("release"), err)
	}
	return nil
}
