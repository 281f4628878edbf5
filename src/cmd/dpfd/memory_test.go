package main

import (
	"context"
	"log/slog"
	"runtime/debug"
	"testing"
	"time"
)

// TestTrimmer checks that memory is returned once per burst, only when a
// quiet interval follows it, and not for an idle or a steadily busy
// daemon.
func TestTrimmer(t *testing.T) {
	const kB, MB = 1 << 10, 1 << 20
	steps := []struct {
		allocated uint64 // counter at the tick
		want      bool
	}{
		{100 * kB, false},                 // idle
		{200 * kB, false},                 // idle, nowhere near a burst
		{3 * MB, false},                   // busy
		{6 * MB, false},                   // busy: a burst, not over yet
		{6*MB + 100*kB, true},             // quiet after the burst: trim
		{6*MB + 200*kB, false},            // still quiet: already trimmed
		{9 * MB, false},                   // busy again
		{9*MB + 10*kB, false},             // quiet, but less than trimBurst since the trim
		{11 * MB, false},                  // busy: the second burst completes
		{11*MB + 1*kB, true},              // quiet: trim again
		{11*MB + 1*kB, false},             // no allocation at all
		{11*MB + 1*kB + trimQuiet, false}, // busy by exactly trimQuiet
	}
	tr := newTrimmer(0)
	for i, s := range steps {
		got := tr.tick(s.allocated)
		if got != s.want {
			t.Fatalf("tick %d (allocated %d): trim %v, want %v", i, s.allocated, got, s.want)
		}
		if got {
			tr.trimmed(s.allocated)
		}
	}
}

// TestTrimWhenIdleStops checks that the trimmer trims after a burst and
// returns when its context ends.
func TestTrimWhenIdleStops(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	tick := make(chan time.Time)
	counter := make(chan uint64)
	freed := make(chan struct{}, 1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		trimWhenIdle(ctx, tick, func() uint64 { return <-counter }, func() { freed <- struct{}{} }, func() {})
	}()
	counter <- 0
	tick <- time.Time{}
	counter <- trimBurst // busy
	tick <- time.Time{}
	counter <- trimBurst // quiet: trims, then reads the counter again
	counter <- trimBurst
	select {
	case <-freed:
	case <-time.After(10 * time.Second):
		t.Fatal("no trim after a burst and a quiet tick")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("trimWhenIdle did not return when its context ended")
	}
}

// TestTuneMemory checks that the daemon's GOGC default applies only when
// the environment sets none.
func TestTuneMemory(t *testing.T) {
	old := debug.SetGCPercent(100)
	defer debug.SetGCPercent(old)
	log := slog.New(slog.DiscardHandler)
	if tuneMemory(func(k string) string {
		if k == "GOGC" {
			return "200"
		}
		return ""
	}, log) {
		t.Fatal("with GOGC set, tuneMemory says the pacer may change it")
	}
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, GC percent changed to %d", got)
	}
	if !tuneMemory(func(string) string { return "" }, log) {
		t.Fatal("without GOGC, tuneMemory says the pacer may not change it")
	}
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("without GOGC, GC percent %d, want %d", got, defaultGCPercent)
	}
}

// TestGCPercentFor checks the pacer's choice: gcHeadroom of garbage, within
// the bounds, in steps of 5; and that it sets GOGC only on a change.
func TestGCPercentFor(t *testing.T) {
	for _, c := range []struct {
		live uint64
		want int
	}{
		{0, maxGCPercent},
		{1 << 20, maxGCPercent},      // 200 % would be allowed: capped
		{2 << 20, maxGCPercent},      // exactly 100 %
		{3 << 20, 65},                // 66.7 % down to a step of 5
		{5_500_000, 35},              // about 10,000 leases
		{8 << 20, defaultGCPercent},  // 25 %
		{64 << 20, defaultGCPercent}, // never below the default
		{gcHeadroom * 100 / 42, 40},  // 42 % down to 40
		{gcHeadroom*100/45 + 1, 40},  // just under 45 %
		{gcHeadroom * 100 / 45, 45},  // 45 %
	} {
		if got := gcPercentFor(c.live); got != c.want {
			t.Errorf("gcPercentFor(%d) = %d, want %d", c.live, got, c.want)
		}
	}
	var sets []int
	p := gcPacer{cur: defaultGCPercent, set: func(v int) int { sets = append(sets, v); return 0 }}
	for _, live := range []uint64{0, 3 << 20, 3<<20 + 1000, 8 << 20, 64 << 20} {
		p.tick(live)
	}
	if len(sets) != 2 || sets[0] != 65 || sets[1] != defaultGCPercent {
		t.Fatalf("GOGC set to %v, want [65 25]", sets)
	}
}
