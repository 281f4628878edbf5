package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"testing"
	"time"
)

// fakeMapper grants or fails Map calls as told; gate, if set, holds each
// Map until it receives.
type fakeMapper struct {
	mu       sync.Mutex
	fails    int   // the next fails Map calls fail
	err      error // what they fail with; nil means "router says no"
	maps     int
	releases int
	addrs    []netip.Addr // of each Map call
	gate     chan struct{}
}

func (m *fakeMapper) Map(ctx context.Context, proto string, addr netip.Addr, port uint16) (Pinhole, error) {
	if m.gate != nil {
		select {
		case <-m.gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.maps++
	m.addrs = append(m.addrs, addr)
	if m.fails > 0 {
		m.fails--
		if m.err != nil {
			return nil, m.err
		}
		return nil, errors.New("router says no")
	}
	return &fakePinhole{m: m, ext: netip.AddrPortFrom(netip.MustParseAddr("203.0.113.9"), port+1000)}, nil
}

func (m *fakeMapper) counts() (maps, releases int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.maps, m.releases
}

type fakePinhole struct {
	m   *fakeMapper
	ext netip.AddrPort
}

func (p *fakePinhole) External() netip.AddrPort { return p.ext }
func (p *fakePinhole) Release(context.Context) error {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	p.m.releases++
	return nil
}

// trackerHarness is a tracker with a settable clock and its events.
type trackerHarness struct {
	*tracker
	m      *fakeMapper
	events chan Event
	mu     sync.Mutex
	now    time.Time
}

func newHarness(t *testing.T, m *fakeMapper) *trackerHarness {
	h := &trackerHarness{m: m, events: make(chan Event, 100), now: time.Unix(1000, 0)}
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	h.tracker = newTracker(m, log, func(e Event) { h.events <- e }, func() time.Time {
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.now
	})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := h.close(ctx); err != nil {
			t.Error(err)
		}
	})
	return h
}

func (h *trackerHarness) advance(d time.Duration) {
	h.mu.Lock()
	h.now = h.now.Add(d)
	h.mu.Unlock()
}

func (h *trackerHarness) event(t *testing.T) Event {
	t.Helper()
	select {
	case e := <-h.events:
		return e
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
		return Event{}
	}
}

func (h *trackerHarness) noEvent(t *testing.T) {
	t.Helper()
	select {
	case e := <-h.events:
		t.Fatalf("unexpected event %+v", e)
	case <-time.After(50 * time.Millisecond):
	}
}

var web = portKey{proto: "tcp", port: 8080}

func gone(inodes ...uint64) func(uint64, portKey) bool {
	return func(inode uint64, _ portKey) bool {
		for _, g := range inodes {
			if g == inode {
				return false
			}
		}
		return true
	}
}

func TestTrackerRefcount(t *testing.T) {
	h := newHarness(t, &fakeMapper{})
	h.add(1, web, true)
	h.add(2, web, false) // a SO_REUSEPORT sibling
	h.add(1, web, true)  // announced again (listen() twice)
	if e := h.event(t); !e.Opened || e.Err != nil || e.Port != 8080 || e.External.Port() != 9080 {
		t.Fatalf("event %+v", e)
	}
	ext, err := h.wait(context.Background(), web)
	if err != nil || ext.Port() != 9080 {
		t.Fatalf("wait = %v, %v", ext, err)
	}
	h.prune(h.mark(), gone(1))
	h.noEvent(t)
	if h.count() != 1 || !h.has(2) || h.has(1) {
		t.Fatalf("count %d", h.count())
	}
	h.prune(h.mark(), gone(2))
	if e := h.event(t); e.Opened || e.Err != nil || e.Port != 8080 {
		t.Fatalf("event %+v", e)
	}
	if maps, rel := h.m.counts(); maps != 1 || rel != 1 {
		t.Errorf("%d maps, %d releases", maps, rel)
	}
	if _, err := h.wait(context.Background(), web); !errors.Is(err, errSocketGone) {
		t.Errorf("wait after release: %v", err)
	}
}

func TestTrackerPruneKeepsNewerSockets(t *testing.T) {
	h := newHarness(t, &fakeMapper{})
	mark := h.mark() // a poll reads the kernel's list ...
	h.add(1, web, true)
	h.event(t)
	h.prune(mark, gone(1)) // ... that predates socket 1
	if !h.has(1) {
		t.Fatal("socket added after the mark was pruned")
	}
	h.prune(h.mark(), gone(1))
	if h.has(1) {
		t.Fatal("socket not pruned")
	}
	h.event(t)
}

func TestTrackerRetry(t *testing.T) {
	h := newHarness(t, &fakeMapper{fails: 3})
	h.add(1, web, false)
	if e := h.event(t); !e.Opened || e.Err == nil {
		t.Fatalf("event %+v", e)
	}
	if _, err := h.wait(context.Background(), web); err == nil || err.Error() != "router says no" {
		t.Fatalf("wait = %v", err)
	}
	h.retry() // backoff 1 s not over
	h.noEvent(t)
	h.advance(time.Second)
	h.retry()
	if e := h.event(t); e.Err == nil {
		t.Fatalf("second attempt %+v", e)
	}
	h.advance(time.Second) // backoff now 2 s
	h.retry()
	h.noEvent(t)
	// A socket polling finds does not hurry the retry ...
	h.add(2, web, false)
	h.noEvent(t)
	// ... but the shim announcing one does.
	h.add(3, web, true)
	if e := h.event(t); e.Err == nil {
		t.Fatalf("third attempt %+v", e)
	}
	h.advance(4 * time.Second)
	h.retry()
	if e := h.event(t); e.Err != nil || !e.Opened {
		t.Fatalf("fourth attempt %+v", e)
	}
	if maps, _ := h.m.counts(); maps != 4 {
		t.Errorf("%d maps", maps)
	}
}

func TestTrackerSocketGoneDuringMap(t *testing.T) {
	m := &fakeMapper{gate: make(chan struct{})}
	h := newHarness(t, m)
	h.add(1, web, true)
	waited := make(chan error, 1)
	go func() {
		_, err := h.wait(context.Background(), web)
		waited <- err
	}()
	time.Sleep(20 * time.Millisecond)
	h.prune(h.mark(), gone(1))
	m.gate <- struct{}{}
	if e := h.event(t); !e.Opened || e.Err != nil {
		t.Fatalf("first event %+v", e)
	}
	if e := h.event(t); e.Opened || e.Err != nil {
		t.Fatalf("second event %+v, want the release", e)
	}
	if err := <-waited; !errors.Is(err, errSocketGone) {
		t.Errorf("wait = %v", err)
	}
	if maps, rel := m.counts(); maps != 1 || rel != 1 {
		t.Errorf("%d maps, %d releases", maps, rel)
	}
}

func TestTrackerWaitTimeout(t *testing.T) {
	m := &fakeMapper{gate: make(chan struct{})}
	h := newHarness(t, m)
	h.add(1, web, true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := h.wait(ctx, web); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("wait = %v", err)
	}
	// close cancels the running Map (the fake honours its context).
}

func TestTrackerClose(t *testing.T) {
	m := &fakeMapper{}
	h := newHarness(t, m)
	h.add(1, web, true)
	h.add(2, portKey{proto: "udp", port: 53}, true)
	h.event(t)
	h.event(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, rel := m.counts(); rel != 2 {
		t.Errorf("%d releases", rel)
	}
	h.add(3, web, true)
	if h.count() != 0 {
		t.Error("add after close")
	}
}

func TestBackoff(t *testing.T) {
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second, time.Minute, time.Minute}
	for i, w := range want {
		if got := backoff(i + 1); got != w {
			t.Errorf("backoff(%d) = %v, want %v", i+1, got, w)
		}
	}
	if backoff(1000) != retryMax {
		t.Error("backoff(1000)")
	}
}

// Sockets on one port but different addresses (a wildcard and a secondary
// address of the host) get a pinhole each, and the Mapper is told the
// address.
func TestTrackerAddressKeys(t *testing.T) {
	m := &fakeMapper{}
	h := newHarness(t, m)
	secondary := portKey{proto: "tcp", addr: netip.MustParseAddr("192.0.2.10"), port: 8080}
	h.add(1, web, true)
	h.event(t)
	h.add(2, secondary, true)
	if e := h.event(t); !e.Opened || e.Err != nil || e.Addr != secondary.addr || e.Port != 8080 {
		t.Fatalf("event %+v", e)
	}
	m.mu.Lock()
	addrs := m.addrs
	m.mu.Unlock()
	if len(addrs) != 2 || addrs[0].IsValid() || addrs[1] != secondary.addr {
		t.Fatalf("Map got addresses %v, want [invalid 192.0.2.10]", addrs)
	}
	h.prune(h.mark(), gone(2))
	if e := h.event(t); e.Opened || e.Addr != secondary.addr {
		t.Fatalf("event %+v, want the release of %v", e, secondary)
	}
	if _, err := h.wait(context.Background(), web); err != nil {
		t.Errorf("the wildcard pinhole went with the other: %v", err)
	}
	if got := secondary.String(); got != "tcp/192.0.2.10:8080" {
		t.Errorf("String() = %q", got)
	}
}

// retryErr is a refusal that asks for a wait, like *client.ResultError.
type retryErr time.Duration

func (e retryErr) Error() string             { return "NOT_AUTHORIZED" }
func (e retryErr) RetryAfter() time.Duration { return time.Duration(e) }

func wrapped(err error) error { return fmt.Errorf("client: map tcp port 8080: %w", err) }

// A refusal that asks for a long wait is not retried before it ends, not
// even when the shim announces another socket on the port.
func TestTrackerRetryAfter(t *testing.T) {
	h := newHarness(t, &fakeMapper{fails: 1, err: wrapped(retryErr(10 * time.Minute))})
	h.add(1, web, true)
	if e := h.event(t); e.Err == nil {
		t.Fatalf("event %+v", e)
	}
	h.advance(2 * time.Minute) // past any backoff
	h.retry()
	h.noEvent(t)
	h.add(2, web, true)
	h.noEvent(t)
	if _, err := h.wait(context.Background(), web); err == nil {
		t.Error("wait during the hold succeeded")
	}
	h.advance(8 * time.Minute)
	h.retry()
	if e := h.event(t); e.Err != nil || !e.Opened {
		t.Fatalf("event after the wait %+v", e)
	}
	if maps, _ := h.m.counts(); maps != 2 {
		t.Errorf("%d maps, want 2", maps)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		err  error
		want time.Duration
	}{
		{errors.New("plain"), 0},
		{wrapped(retryErr(time.Hour)), retryAfterMax},
		{wrapped(retryErr(90 * time.Second)), 90 * time.Second},
		{retryErr(-time.Second), 0},
	}
	for _, tt := range tests {
		if got := retryAfter(tt.err); got != tt.want {
			t.Errorf("retryAfter(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

// After a Map fails because the router is unreachable, the tracker says so
// for unreachableHold, or until a Map reaches the router.
func TestTrackerUnreachable(t *testing.T) {
	m := &fakeMapper{fails: 1, err: fmt.Errorf("client: %w: no answer", ErrUnreachable)}
	h := newHarness(t, m)
	if h.unreachable() {
		t.Fatal("unreachable before any Map")
	}
	h.add(1, web, true)
	h.event(t)
	if !h.unreachable() {
		t.Fatal("not unreachable after the failure")
	}
	h.advance(unreachableHold)
	if h.unreachable() {
		t.Fatal("still unreachable after unreachableHold")
	}
	// Again, then a success on another port ends it.
	m.mu.Lock()
	m.fails = 1
	m.mu.Unlock()
	h.add(2, portKey{proto: "udp", port: 53}, true)
	h.event(t)
	if !h.unreachable() {
		t.Fatal("not unreachable after the second failure")
	}
	h.add(3, portKey{proto: "udp", port: 54}, true)
	if e := h.event(t); e.Err != nil {
		t.Fatalf("event %+v", e)
	}
	if h.unreachable() {
		t.Fatal("unreachable after a success")
	}
}

func TestIsUnreachable(t *testing.T) {
	tests := []struct {
		err  error
		want bool
	}{
		{nil, false},
		{errors.New("NOT_AUTHORIZED"), false},
		{context.Canceled, false},
		{fmt.Errorf("x: %w", ErrUnreachable), true},
		{fmt.Errorf("gateway unreachable: %w", context.DeadlineExceeded), true},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, true},
	}
	for _, tt := range tests {
		if got := isUnreachable(tt.err); got != tt.want {
			t.Errorf("isUnreachable(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}
