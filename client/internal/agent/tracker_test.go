package agent

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"testing"
	"time"
)

// fakeMapper grants or fails Map calls as told; gate, if set, holds each
// Map until it receives.
type fakeMapper struct {
	mu       sync.Mutex
	fails    int // the next fails Map calls fail
	maps     int
	releases int
	gate     chan struct{}
}

func (m *fakeMapper) Map(ctx context.Context, proto string, port uint16) (Pinhole, error) {
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
	if m.fails > 0 {
		m.fails--
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

var web = portKey{"tcp", 8080}

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
	h.add(2, portKey{"udp", 53}, true)
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
