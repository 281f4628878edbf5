package clock_test

import (
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/clock/clocktest"
)

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// TestFakeJumpWallMovesOnlyTheWallClock: a wall step changes what Wall
// reports, not Now, and fires no timer.
func TestFakeJumpWallMovesOnlyTheWallClock(t *testing.T) {
	f := clocktest.NewFake(t0)
	tm := f.NewTimer(time.Minute)
	f.JumpWall(time.Hour)
	if !f.Now().Equal(t0) {
		t.Fatalf("Now moved with the wall clock: %v", f.Now())
	}
	if w := clock.Wall(f, f.Now()); !w.Equal(t0.Add(time.Hour)) {
		t.Fatalf("Wall after a +1h step: %v", w)
	}
	select {
	case <-tm.C():
		t.Fatal("a wall step fired a timer")
	default:
	}
	f.JumpWall(-3 * time.Hour)
	f.Advance(time.Minute)
	if w := clock.Wall(f, f.Now()); !w.Equal(t0.Add(-2*time.Hour + time.Minute)) {
		t.Fatalf("Wall after -3h and a minute: %v", w)
	}
	select {
	case <-tm.C():
	default:
		t.Fatal("timer did not fire when the fake time reached it")
	}
}

// TestJumpDetectorFake: steps at or above the threshold are reported with
// their sign and size, once; the passing of time and smaller steps are not.
func TestJumpDetectorFake(t *testing.T) {
	f := clocktest.NewFake(t0)
	j := clock.NewJumpDetector(f, 2*time.Second)
	f.Advance(time.Hour)
	if step, now := j.Check(); step != 0 || !now.Equal(t0.Add(time.Hour)) {
		t.Fatalf("plain passing of time: step %v at %v", step, now)
	}
	f.JumpWall(time.Second)
	if step, _ := j.Check(); step != 0 {
		t.Fatalf("a 1 s step (below the threshold) reported as %v", step)
	}
	for _, d := range []time.Duration{-25 * 365 * 24 * time.Hour, 30 * time.Minute, 2 * time.Second} {
		f.Advance(5 * time.Second)
		f.JumpWall(d)
		if step, _ := j.Check(); step != d {
			t.Fatalf("step %v reported as %v", d, step)
		}
		if step, _ := j.Check(); step != 0 {
			t.Fatalf("step %v reported twice (%v)", d, step)
		}
	}
}

// TestJumpDetectorReal: the real clock, not being set, shows no step, and
// Wall is the reading without its monotonic part.
func TestJumpDetectorReal(t *testing.T) {
	j := clock.NewJumpDetector(clock.Real{}, 0)
	time.Sleep(10 * time.Millisecond)
	step, now := j.Check()
	if step != 0 {
		t.Fatalf("real clock stepped by %v in 10 ms (is something setting the clock?)", step)
	}
	w := clock.Wall(clock.Real{}, now)
	if w != now.Round(0) || !w.Equal(now) {
		t.Fatalf("Wall(%v) = %v", now, w)
	}
}

// TestWallWithoutWallReader: a clock that cannot step its wall clock
// separately reports its own time.
func TestWallWithoutWallReader(t *testing.T) {
	var c clock.Clock = plainClock{t0}
	if w := clock.Wall(c, c.Now()); !w.Equal(t0) {
		t.Fatalf("Wall = %v", w)
	}
}

type plainClock struct{ t time.Time }

func (p plainClock) Now() time.Time                       { return p.t }
func (p plainClock) NewTimer(d time.Duration) clock.Timer { return clocktest.NewFake(p.t).NewTimer(d) }
