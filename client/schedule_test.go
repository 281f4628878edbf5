package client

import (
	"math/rand/v2"
	"testing"
	"time"
)

func TestPCPTimeout(t *testing.T) {
	// RFC 6887 section 8.1.1: RT = (1+RAND)*IRT, then (1+RAND)*MIN(2*RTprev, MRT).
	if got := pcpTimeout(0, pcpIRT, 0); got != 2700*time.Millisecond {
		t.Errorf("first timeout with RAND=-0.1 = %v, want 2.7s", got)
	}
	if got := pcpTimeout(0, pcpIRT, 0.5); got != 3*time.Second {
		t.Errorf("first timeout with RAND=0 = %v, want 3s", got)
	}
	if got := pcpTimeout(3*time.Second, pcpIRT, 0.5); got != 6*time.Second {
		t.Errorf("second timeout = %v, want 6s", got)
	}
	if got := pcpTimeout(1000*time.Second, pcpIRT, 0.5); got != pcpMRT {
		t.Errorf("timeout after 1000s = %v, want MRT", got)
	}
	rt := time.Duration(0)
	base := pcpIRT
	for i := range 20 {
		rt = pcpTimeout(rt, pcpIRT, rand.Float64())
		lo, hi := time.Duration(float64(base)*0.9), time.Duration(float64(base)*1.1)
		if rt < lo || rt > hi {
			t.Fatalf("timeout %d = %v, want in [%v, %v]", i, rt, lo, hi)
		}
		base = min(2*rt, pcpMRT)
	}
	if rt > pcpMRT*11/10 {
		t.Fatalf("timeout grew past MRT: %v", rt)
	}
}

func TestNATPMPTimeout(t *testing.T) {
	// RFC 6886 section 3.1: 250 ms, doubling, 9 attempts.
	want := natpmpIRT
	for n := range natpmpAttempts {
		got, ok := natpmpTimeout(n, natpmpIRT)
		if !ok || got != want {
			t.Fatalf("attempt %d: %v, %v; want %v", n, got, ok, want)
		}
		want *= 2
	}
	if d, ok := natpmpTimeout(natpmpAttempts, natpmpIRT); ok {
		t.Fatalf("attempt %d allowed (%v); RFC 6886 stops after 9", natpmpAttempts, d)
	}
	sched := natpmpSchedule(time.Millisecond)
	n := 0
	for _, ok := sched(); ok; _, ok = sched() {
		n++
	}
	if n != natpmpAttempts {
		t.Fatalf("schedule gave %d attempts, want %d", n, natpmpAttempts)
	}
}

func TestRenewDelay(t *testing.T) {
	// RFC 6887 section 11.2.1: renew between 1/2 and 5/8 of the lifetime.
	for _, life := range []time.Duration{time.Second, 2 * time.Minute, 2 * time.Hour, 24 * time.Hour} {
		lo, hi := life/2, life*5/8
		if got := renewDelay(life, 0); got != lo {
			t.Errorf("renewDelay(%v, 0) = %v, want %v", life, got, lo)
		}
		for range 1000 {
			if got := renewDelay(life, rand.Float64()); got < lo || got > hi {
				t.Fatalf("renewDelay(%v) = %v, want in [%v, %v]", life, got, lo, hi)
			}
		}
		if got := renewDelay(life, 0.999999); got < hi-life/1000 || got > hi {
			t.Errorf("renewDelay(%v, ~1) = %v, want just under %v", life, got, hi)
		}
	}
}

func TestSeconds(t *testing.T) {
	tests := []struct {
		d, def time.Duration
		want   uint32
	}{
		{0, 0, 7200},
		{0, time.Hour, 3600},
		{1500 * time.Millisecond, 0, 2},
		{time.Millisecond, 0, 1},
		{200 * 365 * 24 * time.Hour, 0, 1<<32 - 1},
	}
	for _, tt := range tests {
		if got := seconds(tt.d, tt.def); got != tt.want {
			t.Errorf("seconds(%v, %v) = %d, want %d", tt.d, tt.def, got, tt.want)
		}
	}
}
