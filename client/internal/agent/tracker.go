package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"time"
)

// Timeouts and retry bounds of the tracker.
const (
	// mapAttemptTimeout bounds one Map call: PCP and NAT-PMP give up
	// after a few retransmissions, well within this.
	mapAttemptTimeout = 30 * time.Second
	// releaseTimeout bounds one Release call; the router forgets the
	// pinhole at its lifetime's end anyway.
	releaseTimeout = 5 * time.Second
	// retryMin and retryMax bound the backoff between failed Map attempts
	// for a socket that still exists.
	retryMin = time.Second
	retryMax = time.Minute
	// retryAfterMax bounds the wait a refusal asks for (RetryAfter); a
	// longer one is more likely a router's mistake than its intent.
	retryAfterMax = 30 * time.Minute
	// unreachableHold is how long after a Map failed because the router
	// could not be reached the tracker reports it as unreachable (unless
	// a Map succeeds or the router answers meanwhile): long enough to
	// cover a program's start, short enough to notice a router that came
	// back on the next listen().
	unreachableHold = 30 * time.Second
)

// errSocketGone is what a waiter gets when its socket vanished before the
// pinhole was granted.
var errSocketGone = errors.New("socket closed before the pinhole was granted")

// tracker holds the sockets Run maps and one pinhole per portKey, counting
// the sockets that use it: the pinhole opens with the first socket and is
// released with the last. It owns the goroutines that call the Mapper.
type tracker struct {
	mapper Mapper
	log    *slog.Logger
	now    func() time.Time
	ctx    context.Context // ends Map attempts; cancelled by close
	cancel context.CancelFunc
	wg     sync.WaitGroup // Map and Release calls

	notifyMu sync.Mutex // one OnChange call at a time
	onChange func(Event)

	mu     sync.Mutex
	seq    uint64               // incremented by every add
	socks  map[uint64]sockRef   // by inode
	ports  map[portKey]*portRef // refs > 0, or a Map call still running
	closed bool
	// unreachableAt is when the last Map attempt to finish failed
	// because the router could not be reached; zero when the last one
	// reached it (granted or refused).
	unreachableAt time.Time
}

type sockRef struct {
	key       portKey
	seq       uint64 // tracker.seq when added
	announced bool   // by the shim
}

type portRef struct {
	refs    int
	pinhole Pinhole // nil until granted
	ext     netip.AddrPort
	attempt chan struct{} // not nil while Map runs; closed when it returns

	lastErr  error
	failures int
	retryAt  time.Time
	// holdUntil is when the wait the router asked for with its last
	// refusal (RetryAfter) ends; before it, not even a socket the shim
	// announces makes the tracker ask again.
	holdUntil time.Time
}

func newTracker(m Mapper, log *slog.Logger, onChange func(Event), now func() time.Time) *tracker {
	ctx, cancel := context.WithCancel(context.Background())
	return &tracker{
		mapper: m, log: log, onChange: onChange, now: now,
		ctx: ctx, cancel: cancel,
		socks: map[uint64]sockRef{}, ports: map[portKey]*portRef{},
	}
}

// add tracks the socket with inode under key; adding a tracked inode again
// only records that the shim announced it. A new port is mapped at once; so
// is a port waiting to retry when the shim announces it (a program calling
// listen() is worth an immediate attempt), unless the router asked to wait
// longer.
func (t *tracker) add(inode uint64, key portKey, announced bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return
	}
	if s, ok := t.socks[inode]; ok {
		if s.key == key {
			s.announced = s.announced || announced
			t.socks[inode] = s
			if p := t.ports[key]; announced && p != nil && p.pinhole == nil && p.attempt == nil && !t.now().Before(p.holdUntil) {
				t.startLocked(key, p)
			}
			return
		}
		// The inode was reused by a new socket before a poll noticed.
		t.removeLocked(inode)
	}
	t.seq++
	t.socks[inode] = sockRef{key: key, seq: t.seq, announced: announced}
	p := t.ports[key]
	if p == nil {
		p = &portRef{}
		t.ports[key] = p
	}
	p.refs++
	if p.pinhole == nil && p.attempt == nil && (p.failures == 0 || announced && !t.now().Before(p.holdUntil)) {
		t.startLocked(key, p)
	}
}

// has reports whether inode is tracked.
func (t *tracker) has(inode uint64) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.socks[inode]
	return ok
}

// count returns the number of tracked sockets.
func (t *tracker) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.socks)
}

// mark returns the sequence number of the latest add. Take it before
// reading the kernel's socket list and pass it to prune, so that a socket
// added during the read is not taken for gone.
func (t *tracker) mark() uint64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.seq
}

// prune forgets the sockets added up to mark that exists reports gone.
func (t *tracker) prune(mark uint64, exists func(inode uint64, key portKey) bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for inode, s := range t.socks {
		if s.seq <= mark && !exists(inode, s.key) {
			t.removeLocked(inode)
		}
	}
}

func (t *tracker) removeLocked(inode uint64) {
	s, ok := t.socks[inode]
	if !ok {
		return
	}
	delete(t.socks, inode)
	p := t.ports[s.key]
	if p == nil {
		return
	}
	p.refs--
	if p.refs > 0 {
		return
	}
	if p.attempt != nil {
		return // the attempt releases what it gets and deletes p
	}
	delete(t.ports, s.key)
	if p.pinhole != nil {
		t.releaseLocked(s.key, p.pinhole, p.ext)
	}
}

// retry starts the Map attempts whose backoff has passed.
func (t *tracker) retry() {
	t.mu.Lock()
	defer t.mu.Unlock()
	now := t.now()
	for key, p := range t.ports {
		if p.refs > 0 && p.pinhole == nil && p.attempt == nil && !now.Before(p.retryAt) {
			t.startLocked(key, p)
		}
	}
}

// unreachable reports whether the router could not be reached by the last
// Map attempt to finish, less than unreachableHold ago.
func (t *tracker) unreachable() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !t.unreachableAt.IsZero() && t.now().Sub(t.unreachableAt) < unreachableHold
}

// wait waits until key's pinhole is granted, its attempt fails or ctx ends.
func (t *tracker) wait(ctx context.Context, key portKey) (netip.AddrPort, error) {
	t.mu.Lock()
	p := t.ports[key]
	if p == nil || p.refs == 0 {
		t.mu.Unlock()
		return netip.AddrPort{}, errSocketGone
	}
	if p.pinhole != nil {
		defer t.mu.Unlock()
		return p.ext, nil
	}
	ch := p.attempt
	t.mu.Unlock()
	if ch != nil {
		select {
		case <-ch:
		case <-ctx.Done():
			return netip.AddrPort{}, ctx.Err()
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	switch {
	case t.ports[key] != p || p.refs == 0:
		return netip.AddrPort{}, errSocketGone
	case p.pinhole != nil:
		return p.ext, nil
	case p.lastErr != nil:
		return netip.AddrPort{}, p.lastErr
	}
	return netip.AddrPort{}, errors.New("no pinhole")
}

func (t *tracker) startLocked(key portKey, p *portRef) {
	ch := make(chan struct{})
	p.attempt = ch
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.attempt(key, p, ch)
	}()
}

func (t *tracker) attempt(key portKey, p *portRef, done chan struct{}) {
	ctx, cancel := context.WithTimeout(t.ctx, mapAttemptTimeout)
	ph, err := t.mapper.Map(ctx, key.proto, key.addr, key.port)
	cancel()
	if err == nil && ph == nil {
		err = errors.New("mapper returned no pinhole")
	}
	var ext netip.AddrPort
	if err == nil {
		ext = ph.External()
	}

	t.mu.Lock()
	p.attempt = nil
	close(done)
	gone := false
	now := t.now()
	var wait time.Duration // until the next attempt
	if err != nil {
		p.failures++
		p.lastErr = err
		wait = backoff(p.failures)
		if ra := retryAfter(err); ra > wait {
			wait = ra
			p.holdUntil = now.Add(ra)
		}
		p.retryAt = now.Add(wait)
		if p.refs == 0 && t.ports[key] == p {
			delete(t.ports, key)
		}
	} else if gone = p.refs == 0 || t.closed; gone {
		// The socket went away (or Run is ending) while Map ran.
		if t.ports[key] == p {
			delete(t.ports, key)
		}
	} else {
		p.pinhole, p.ext = ph, ext
		p.failures, p.lastErr, p.holdUntil = 0, nil, time.Time{}
	}
	failures, closed := p.failures, t.closed
	switch {
	case closed:
	case isUnreachable(err):
		t.unreachableAt = now
	default:
		t.unreachableAt = time.Time{}
	}
	if err != nil && closed {
		// Run is ending and cancelled the attempt: nothing to report.
		t.mu.Unlock()
		t.log.Debug("pinhole attempt ended by shutdown", "port", key, "err", err)
		return
	}
	// Taking notifyMu before letting go of mu orders this event before the
	// release of the same pinhole, which a poll may start right away.
	t.notifyMu.Lock()
	t.mu.Unlock()
	if err != nil {
		t.log.Warn("pinhole failed", "port", key, "attempt", failures, "retry_in", wait, "err", err)
	} else {
		t.log.Info("pinhole open", "port", key, "external", ext)
	}
	t.notifyLocked(Event{Opened: true, Proto: key.proto, Addr: key.addr, Port: key.port, External: ext, Err: err})
	t.notifyMu.Unlock()
	if gone {
		t.release(key, ph, ext)
	}
}

// releaseLocked releases ph in a goroutine that close waits for.
func (t *tracker) releaseLocked(key portKey, ph Pinhole, ext netip.AddrPort) {
	t.wg.Add(1)
	go func() {
		defer t.wg.Done()
		t.release(key, ph, ext)
	}()
}

// release calls ph.Release with its own timeout: a release must happen
// even when Run's context is already cancelled.
func (t *tracker) release(key portKey, ph Pinhole, ext netip.AddrPort) {
	ctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
	defer cancel()
	err := ph.Release(ctx)
	if err != nil {
		t.log.Warn("releasing pinhole", "port", key, "external", ext, "err", err)
	} else {
		t.log.Info("pinhole released", "port", key, "external", ext)
	}
	t.notifyMu.Lock()
	defer t.notifyMu.Unlock()
	t.notifyLocked(Event{Proto: key.proto, Addr: key.addr, Port: key.port, External: ext, Err: err})
}

func (t *tracker) notifyLocked(ev Event) {
	if t.onChange != nil {
		t.onChange(ev)
	}
}

// close stops Map attempts, releases every pinhole and waits, at most until
// ctx ends, for the Mapper calls to return. After close, add does nothing.
func (t *tracker) close(ctx context.Context) error {
	t.mu.Lock()
	t.closed = true
	t.cancel()
	for key, p := range t.ports {
		if p.pinhole != nil {
			t.releaseLocked(key, p.pinhole, p.ext)
		}
		if p.attempt == nil {
			delete(t.ports, key)
		}
	}
	clear(t.socks)
	t.mu.Unlock()

	done := make(chan struct{})
	go func() {
		t.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return errors.New("mapper calls still running after the release timeout")
	}
}

// backoff returns the wait after the n-th consecutive failure (n >= 1).
func backoff(n int) time.Duration {
	d := retryMin
	for i := 1; i < n && d < retryMax; i++ {
		d *= 2
	}
	return min(d, retryMax)
}

// retryAfter returns the wait a refusal asks for: err's RetryAfter method
// (the client library's *ResultError has one, from the PCP error lifetime),
// at most retryAfterMax; 0 without one.
func retryAfter(err error) time.Duration {
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) {
		return 0
	}
	return min(max(ra.RetryAfter(), 0), retryAfterMax)
}

// isUnreachable reports whether err says the router could not be reached:
// it wraps ErrUnreachable or context.DeadlineExceeded, or is a timeout.
func isUnreachable(err error) bool {
	if err == nil {
		return false
	}
	if errors.Is(err, ErrUnreachable) || errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var te interface{ Timeout() bool }
	return errors.As(err, &te) && te.Timeout()
}
