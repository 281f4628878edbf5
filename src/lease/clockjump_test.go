package lease_test

import (
	"context"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease/leasetest"
)

// jumpCheck is how far the fake clock must move for Run's wall-clock check
// to come round (the package's jumpCheckInterval).
const jumpCheck = 2 * time.Second

// runManager runs r.m.Run until the test ends (or stop is called) and waits
// until Run has armed its timers: its expiry timer and its wall-clock check.
func runManager(t *testing.T, r *rig) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.m.Run(ctx); close(done) }()
	stop = func() {
		cancel()
		<-done
	}
	t.Cleanup(stop)
	waitFor(t, func() bool { return r.clk.Pending() == 2 })
	return stop
}

// TestWallClockStepRewritesStoredExpiries: a router restores a one-hour
// lease with its clock at the wrong time, then the clock is set (NTP) while
// dpfd runs, forwards or backwards. The lease keeps its remaining lifetime
// in memory and in the store, so a restart at the corrected time restores
// it with what it really has left, not nothing (stored expiry years in the
// past) or a fresh full lifetime.
func TestWallClockStepRewritesStoredExpiries(t *testing.T) {
	for _, step := range []time.Duration{25 * 365 * 24 * time.Hour, -25 * 365 * 24 * time.Hour, 30 * time.Minute} {
		t.Run(step.String(), func(t *testing.T) {
			r := newRig(t, nil)
			l, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			r.clk.Advance(10 * time.Minute)
			runManager(t, r)

			r.clk.JumpWall(step)
			r.clk.Advance(jumpCheck)
			// Ten minutes and two seconds of the hour have gone, on
			// the monotonic clock; the stored expiry is the deadline
			// read on the wall clock as it is now.
			want := t0.Add(step + time.Hour)
			waitFor(t, func() bool { s, _ := r.st.Get(l.Key()); return s.Expires.Equal(want) })
			if got, ok := r.m.Get(l.Key()); !ok || !got.Expires.Equal(want) {
				t.Fatalf("lease in memory after the step: %v %+v, want expiry %v", ok, got, want)
			}
			if _, ok := r.fw.Get(l.Key()); !ok {
				t.Fatal("pinhole removed by a wall-clock step")
			}

			// A restart at the corrected time restores what is left.
			restart := newRig(t, nil)
			restart.clk.Set(t0.Add(step + 10*time.Minute + jumpCheck + 30*time.Second))
			if n, dropped, err := restart.m.Restore(r.st.All()); n != 1 || dropped != 0 || err != nil {
				t.Fatalf("restore: %d restored, %d dropped, %v", n, dropped, err)
			}
			got, _ := restart.m.Get(l.Key())
			if left := got.Expires.Sub(restart.clk.Now()); left != 50*time.Minute-jumpCheck-30*time.Second {
				t.Fatalf("restored with %v left, want 49m28s", left)
			}
		})
	}
}

// TestWallClockSmallDriftWritesNothing: time passing and a step below the
// threshold do not touch the store.
func TestWallClockSmallDriftWritesNothing(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	writes := r.st.Writes
	stop := runManager(t, r)
	r.clk.JumpWall(time.Second)
	r.clk.Advance(jumpCheck)
	// Let Run come round twice more: each check re-arms one timer.
	for range 2 {
		waitFor(t, func() bool { return r.clk.Pending() == 2 })
		r.clk.Advance(jumpCheck)
	}
	stop()
	if r.st.Writes != writes {
		t.Fatalf("%d store writes for a 1 s drift", r.st.Writes-writes)
	}
}

// TestWallClockStepStoreFailure: when the rewrite fails, the leases stay
// marked unwritten and the next checkpoint writes the corrected expiries.
func TestWallClockStepStoreFailure(t *testing.T) {
	r := newRig(t, nil)
	l, err := r.m.Map(natpmp(hostA, firewall.UDP, 3000, 0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r.st.Fail = leasetest.ErrInjected // before Run starts: no race
	stop := runManager(t, r)
	r.clk.JumpWall(-time.Hour)
	r.clk.Advance(jumpCheck)
	waitFor(t, func() bool { g, _ := r.m.Get(l.Key()); return g.Expires.Equal(t0) })
	stop()
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("stored expiry changed although the store failed: %v", s.Expires)
	}
	r.st.Fail = nil
	if err := r.m.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0) {
		t.Fatalf("checkpoint after the failed rewrite stored %v, want %v", s.Expires, t0)
	}
}

// TestWallClockStepAtShutdown: a step shortly before Run stops (before the
// next periodic check) is still written by the final checkpoint.
func TestWallClockStepAtShutdown(t *testing.T) {
	r := newRig(t, nil)
	l, err := r.m.Map(natpmp(hostB, firewall.TCP, 4000, 0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	stop := runManager(t, r)
	r.clk.JumpWall(24 * time.Hour)
	stop()
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0.Add(25 * time.Hour)) {
		t.Fatalf("stored expiry after a step and shutdown: %v", s.Expires)
	}
}
