package lease_test

import (
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
)

// TestSetCheckpointIntervalWhileRunning: a renewal's expiry reaches the
// store one checkpoint interval after the last checkpoint; a new interval
// set while Run waits on the old one (5 minutes) is the one it goes by.
func TestSetCheckpointIntervalWhileRunning(t *testing.T) {
	r := newRig(t, nil)
	runManager(t, r)
	l, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r.clk.Advance(time.Minute)
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Hour)); err != nil {
		t.Fatal(err)
	}
	renewed := t0.Add(61 * time.Minute)
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("stored expiry %v before any checkpoint, want %v", s.Expires, t0.Add(time.Hour))
	}
	r.m.SetCheckpointInterval(2 * time.Minute)
	r.clk.Advance(time.Minute)
	waitFor(t, func() bool { s, _ := r.st.Get(l.Key()); return s.Expires.Equal(renewed) })
}
