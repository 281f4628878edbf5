package server

import (
	"net/netip"
	"testing"
	"time"
)

// burst sends n NAT-PMP address requests from src at the rig's current
// time and returns how many were answered.
func (r *rig) burst(src netip.AddrPort, n int) int {
	answered := 0
	for range n {
		if r.s.Handle([]byte{0, 0}, src) != nil {
			answered++
		}
	}
	return answered
}

// TestSetRateLimit: a new rate and burst apply to the next request of
// every host, those that had a bucket already and new ones; the defaults
// stand in for values of 0.
func TestSetRateLimit(t *testing.T) {
	r := newRig(t)
	r.s.SetRateLimit(1, 5)
	if got := r.burst(hostA, 3); got != 3 {
		t.Fatalf("answered %d of 3 within a burst of 5", got)
	}
	// hostA has 2 tokens left; a burst of 1 leaves it 1.
	r.s.SetRateLimit(0.5, 1)
	if got := r.burst(hostA, 10); got != 1 {
		t.Fatalf("hostA: answered %d of 10 after the burst became 1, want 1", got)
	}
	hostC := netip.MustParseAddrPort("198.51.100.12:40000")
	if got := r.burst(hostC, 10); got != 1 {
		t.Fatalf("new host: answered %d of 10 with a burst of 1, want 1", got)
	}
	// Refill at the new rate: 0.5 per second.
	r.clk.Advance(time.Second)
	if got := r.burst(hostA, 10); got != 0 {
		t.Fatalf("hostA: answered %d after 1 s at 0.5/s, want 0", got)
	}
	r.clk.Advance(time.Second)
	if got := r.burst(hostA, 10); got != 1 {
		t.Fatalf("hostA: answered %d after 2 s at 0.5/s, want 1", got)
	}
	// Raised: 10 per second, up to 20.
	r.s.SetRateLimit(10, 20)
	r.clk.Advance(time.Second)
	if got := r.burst(hostA, 30); got != 10 {
		t.Fatalf("hostA: answered %d after 1 s at 10/s, want 10", got)
	}
	r.clk.Advance(time.Minute)
	if got := r.burst(hostA, 30); got != 20 {
		t.Fatalf("hostA: answered %d after a rest with a burst of 20, want 20", got)
	}
	r.s.SetRateLimit(0, 0)
	r.clk.Advance(time.Minute)
	if got := r.burst(hostA, 100); got != DefaultRateBurst {
		t.Fatalf("defaults: answered %d after a rest, want %d", got, DefaultRateBurst)
	}
}
