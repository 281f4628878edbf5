package clock

import "time"

// WallReader is implemented by clocks whose wall-clock reading can move
// apart from the time line on which they measure intervals, as the real
// clock's does when someone sets it. Real and clocktest.Fake implement it.
type WallReader interface {
	// WallAt returns what the wall clock read at t, a time Now returned,
	// without a monotonic reading (so it can be stored and compared with
	// stored times).
	WallAt(t time.Time) time.Time
}

// WallAt implements [WallReader]: the wall reading time.Now recorded in t.
func (Real) WallAt(t time.Time) time.Time { return t.Round(0) }

// Wall returns the wall-clock reading of c at t, a time c.Now returned. For
// a clock that does not implement [WallReader] it is t without its
// monotonic reading, which makes a step of such a clock invisible to a
// [JumpDetector].
func Wall(c Clock, t time.Time) time.Time {
	if w, ok := c.(WallReader); ok {
		return w.WallAt(t)
	}
	return t.Round(0)
}

// DefaultJumpThreshold is the smallest difference between the wall clock's
// and the monotonic clock's progress that a [JumpDetector] reports. Drift
// and NTP slewing (at most 500 ppm) move the two apart by milliseconds per
// check; someone setting the clock (an NTP step, a router without a
// real-time clock syncing after boot, `date -s`) moves it by far more.
const DefaultJumpThreshold = 2 * time.Second

// JumpDetector notices the wall clock being set: at each Check it compares
// how far the wall clock moved since the previous one with how far the
// monotonic clock (the time line Now's values are compared on) moved. It
// is not safe for concurrent use; its owner calls Check periodically.
type JumpDetector struct {
	clk       Clock
	threshold time.Duration
	now       time.Time // the previous reading, with its monotonic part
	wall      time.Time // the wall clock at that reading
}

// NewJumpDetector returns a detector for c that takes its first reading
// now. A threshold <= 0 means DefaultJumpThreshold.
func NewJumpDetector(c Clock, threshold time.Duration) *JumpDetector {
	if threshold <= 0 {
		threshold = DefaultJumpThreshold
	}
	j := &JumpDetector{clk: c, threshold: threshold}
	j.now = c.Now()
	j.wall = Wall(c, j.now)
	return j
}

// Check takes a new reading and returns it together with the wall clock's
// step since the previous reading: positive when the clock was set
// forwards, negative when set backwards, and 0 when the two clocks moved
// apart by less than the threshold.
func (j *JumpDetector) Check() (step time.Duration, now time.Time) {
	now = j.clk.Now()
	wall := Wall(j.clk, now)
	step = wall.Sub(j.wall) - now.Sub(j.now)
	j.now, j.wall = now, wall
	if step.Abs() < j.threshold {
		return 0, now
	}
	return step, now
}
