// Package clocktest provides a manual clock for tests of code that takes a
// [clock.Clock].
package clocktest

import (
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/clock"
)

// Fake is a manual clock for tests. Its time only moves when Advance or Set
// is called; timers whose deadline is reached then fire. The zero value is
// not usable; call NewFake.
//
// Now reports the fake time, which plays the part of both clocks a real
// time.Time carries: intervals are measured on it and it is what gets
// stored. JumpWall models the wall clock being set (settimeofday, an NTP
// step) apart from it: the step shows only through [Wall], as on a real
// system the step changes a time.Time's wall reading but not its monotonic
// one.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	wall   time.Duration // the wall clock's steps so far (JumpWall)
	timers []*fakeTimer
}

// NewFake returns a fake clock reading start.
func NewFake(start time.Time) *Fake { return &Fake{now: start} }

// Now returns the fake time.
func (f *Fake) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (f *Fake) NewTimer(d time.Duration) clock.Timer {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := &fakeTimer{f: f, at: f.now.Add(d), c: make(chan time.Time, 1)}
	if d <= 0 {
		t.c <- f.now
		return t
	}
	f.timers = append(f.timers, t)
	return t
}

// Advance moves the fake time forward by d and fires due timers.
func (f *Fake) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.fireLocked()
	f.mu.Unlock()
}

// Set moves the fake time to t (forwards or backwards) and fires due timers.
func (f *Fake) Set(t time.Time) {
	f.mu.Lock()
	f.now = t
	f.fireLocked()
	f.mu.Unlock()
}

// JumpWall sets the wall clock d later (earlier when d is negative) without
// moving the fake time: timers do not fire and Now does not change, but
// Wall reports readings moved by the sum of every step so far.
func (f *Fake) JumpWall(d time.Duration) {
	f.mu.Lock()
	f.wall += d
	f.mu.Unlock()
}

// WallAt implements [clock.WallReader]: t moved by the wall-clock steps JumpWall
// made.
func (f *Fake) WallAt(t time.Time) time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return t.Round(0).Add(f.wall)
}

// Pending reports how many timers are waiting.
func (f *Fake) Pending() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.timers)
}

func (f *Fake) fireLocked() {
	kept := f.timers[:0]
	for _, t := range f.timers {
		if !t.at.After(f.now) {
			t.c <- f.now
			continue
		}
		kept = append(kept, t)
	}
	for i := len(kept); i < len(f.timers); i++ {
		f.timers[i] = nil
	}
	f.timers = kept
}

type fakeTimer struct {
	f  *Fake
	at time.Time
	c  chan time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.c }

func (t *fakeTimer) Stop() bool {
	t.f.mu.Lock()
	defer t.f.mu.Unlock()
	for i, x := range t.f.timers {
		if x == t {
			t.f.timers = append(t.f.timers[:i], t.f.timers[i+1:]...)
			return true
		}
	}
	return false
}
