package server

import (
	"net/netip"
	"sync"
	"time"
)

// limiter is a token bucket per source address. Buckets of quiet hosts are
// forgotten so the map stays small.
type limiter struct {
	mu      sync.Mutex
	rate    float64 // tokens per second; guarded by mu
	burst   float64 // guarded by mu
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

// set replaces the rate and the bucket size. Hosts keep their buckets,
// holding no more than the new size.
func (l *limiter) set(rate float64, burst int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.rate, l.burst = rate, float64(burst)
	for _, b := range l.buckets {
		b.tokens = min(b.tokens, l.burst)
	}
}

// SetRateLimit replaces Config.RateLimit and Config.RateBurst (after a
// configuration reload); values of 0 or less mean the defaults. It applies
// to the next request of every host: a host keeps the tokens it has, up
// to the new burst, and earns new ones at the new rate.
func (s *Server) SetRateLimit(rate float64, burst int) {
	if rate <= 0 {
		rate = DefaultRateLimit
	}
	if burst <= 0 {
		burst = DefaultRateBurst
	}
	s.limiter.set(rate, burst)
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
