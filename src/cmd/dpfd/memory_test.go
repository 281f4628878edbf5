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
		trimWhenIdle(ctx, tick, func() uint64 { return <-counter }, func() { freed <- struct{}{} })
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
	tuneMemory(func(k string) string {
		if k == "GOGC" {
			return "200"
		}
		return ""
	}, log)
	if got := debug.SetGCPercent(100); got != 100 {
		t.Fatalf("with GOGC set, GC percent changed to %d", got)
	}
	tuneMemory(func(string) string { return "" }, log)
	if got := debug.SetGCPercent(100); got != defaultGCPercent {
		t.Fatalf("without GOGC, GC percent %d, want %d", got, defaultGCPercent)
	}
}
