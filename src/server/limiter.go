package server

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source address. Buckets of quiet hosts are
// forgotten so the map stays small.
type limiter struct {
	rate  float64 // tokens per second
	burst float64

	mu      sync.Mutex
	buckets map[netip.Addr]*bucket
	swept   time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// sweepEvery is how often idle buckets are dropped; a bucket idle that long
// is full again anyway.
const sweepEvery = time.Minute

// maxBuckets bounds memory under a flood of spoofed source addresses; past
// it, unknown sources share no bucket and are refused until a sweep.
const maxBuckets = 65536

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: map[netip.Addr]*bucket{}}
}

func (l *limiter) allow(a netip.Addr, now time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if now.Sub(l.swept) > sweepEvery {
		for k, b := range l.buckets {
			if now.Sub(b.last) > sweepEvery {
				delete(l.buckets, k)
			}
		}
		l.swept = now
	}
	b := l.buckets[a]
	if b == nil {
		if len(l.buckets) >= maxBuckets {
			return false
		}
		b = &bucket{tokens: l.burst, last: now}
		l.buckets[a] = b
	}
	if d := now.Sub(b.last); d > 0 {
		b.tokens = min(l.burst, b.tokens+d.Seconds()*l.rate)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
