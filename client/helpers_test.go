package client

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"
)

// Test timing: retransmissions from 20 ms, jitter up to 50 ms, retries
// from 20 ms. Every wait below is bounded by waitFor.
const (
	testIRT = 20 * time.Millisecond
	waitFor = 5 * time.Second
)

func newTestGW(t *testing.T) *fakeGW {
	t.Helper()
	g, err := startFakeGW()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func testConfig(t *testing.T, g *fakeGW) Config {
	return Config{
		Gateway:           g.addr,
		InitialRetransmit: testIRT,
		MaxJitter:         50 * time.Millisecond,
		DisableAnnounce:   true,
		Logger:            slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func newTestClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	c.retryMin = 20 * time.Millisecond
	c.retryMax = 200 * time.Millisecond
	c.recreateTimeout = 2 * time.Second
	c.releaseTimeout = 500 * time.Millisecond
	t.Cleanup(func() { c.Close() })
	return c
}

func mustMap(t *testing.T, c *Client, req MapRequest) *Mapping {
	t.Helper()
	m, err := c.Map(t.Context(), req)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// nextEvent returns the next event of m, failing after waitFor.
func nextEvent(t *testing.T, m *Mapping) Event {
	t.Helper()
	select {
	case ev, ok := <-m.Events():
		if !ok {
			t.Fatal("events channel closed")
		}
		return ev
	case <-time.After(waitFor):
		t.Fatal("no event")
	}
	panic("unreachable")
}

// expectEvents reads events of m and checks their kinds in order.
func expectEvents(t *testing.T, m *Mapping, kinds ...EventKind) []Event {
	t.Helper()
	var evs []Event
	for _, k := range kinds {
		ev := nextEvent(t, m)
		if ev.Kind != k {
			t.Fatalf("event %d = %v (%v), want %v", len(evs), ev.Kind, ev.Err, k)
		}
		evs = append(evs, ev)
	}
	return evs
}

// noEvent checks that m gets no event within d.
func noEvent(t *testing.T, m *Mapping, d time.Duration) {
	t.Helper()
	select {
	case ev := <-m.Events():
		t.Fatalf("unexpected event %v (%v)", ev.Kind, ev.Err)
	case <-time.After(d):
	}
}

func ext(port uint16) netip.AddrPort { return netip.AddrPortFrom(fakeExternal, port) }
