package main

import (
	"bytes"
	"regexp"
	"strconv"
	"testing"

	"github.com/dpf-router/dpf/src/control"
)

// TestPrintStatusCounters: `dpfd status` shows every counter the daemon
// reports, each with its own value.
func TestPrintStatusCounters(t *testing.T) {
	st := control.Status{Counters: map[string]uint64{}}
	want := map[string]string{} // value -> counter
	for i, name := range control.CounterNames {
		v := uint64(1001 + i)
		st.Counters[name] = v
		want[strconv.FormatUint(v, 10)] = name
	}
	var out bytes.Buffer
	printStatus(&out, st)
	seen := map[string]int{}
	for _, n := range regexp.MustCompile(`\b1\d\d\d\b`).FindAllString(out.String(), -1) {
		seen[n]++
	}
	for v, name := range want {
		if seen[v] != 1 {
			t.Errorf("counter %s (%s) shown %d times, want once", name, v, seen[v])
		}
	}
	if t.Failed() {
		t.Logf("dpfd status printed:\n%s", out.String())
	}
}
