package agent

import (
	"maps"
	"slices"
	"testing"
)

func TestParseStat(t *testing.T) {
	tests := []struct {
		in   string
		want proc
		ok   bool
	}{
		// Captured from /proc/self/stat of "sleep" (Linux 6.18).
		{"4242 (sleep) S 4200 4242 4200 34816 4242 4194304 95 0 0 0 0 0 0 0 20 0 1 0 123456 5869568 128 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 3 0 0 0 0 0\n",
			proc{pid: 4242, ppid: 4200, pgrp: 4242, sess: 4200, state: 'S', start: 123456}, true},
		// A command name with spaces and parentheses.
		{"17 (a) b (c)) Z 1 17 17 0 -1 4194560 0 0 0 0 0 0 0 0 20 0 1 0 99 0 0 18446744073709551615 0 0 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0",
			proc{pid: 17, ppid: 1, pgrp: 17, sess: 17, state: 'Z', start: 99}, true},
		{"", proc{}, false},
		{"12 (x)", proc{}, false},
		{"x (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", proc{}, false},
		{"12 (y) S z 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", proc{}, false},
		{"12 (y) SS 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20", proc{}, false},
		{"12 (y) S 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 x", proc{}, false},
		{"12 y) S 1", proc{}, false},
	}
	for _, tt := range tests {
		got, err := parseStat([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseStat(%q) = %+v, %v; want %+v ok=%v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

func TestParseSocketLink(t *testing.T) {
	for in, want := range map[string]uint64{"socket:[12345]": 12345, "socket:[]": 0, "pipe:[5]": 0, "/dev/null": 0, "socket:[x]": 0, "socket:[1": 0} {
		got, ok := parseSocketLink(in)
		if got != want || ok != (want != 0) {
			t.Errorf("parseSocketLink(%q) = %d, %v", in, got, ok)
		}
	}
}

func TestDescendants(t *testing.T) {
	const self = 100
	procs := []proc{
		{pid: 1, ppid: 0, start: 1, sess: 1, pgrp: 1},
		{pid: self, ppid: 1, start: 10, sess: 90, pgrp: 100},
		{pid: 200, ppid: self, start: 20, sess: 90, pgrp: 100}, // the main process
		{pid: 201, ppid: 200, start: 21, sess: 90, pgrp: 100},  // its child
		{pid: 202, ppid: 201, start: 22, sess: 90, pgrp: 100},  // grandchild
		{pid: 300, ppid: self, start: 30, sess: 90, pgrp: 100}, // an orphan seen before
		{pid: 301, ppid: 300, start: 31, sess: 90, pgrp: 100},  // its child
		{pid: 400, ppid: self, start: 40, sess: 90, pgrp: 100}, // an orphan carrying our environment
		{pid: 500, ppid: self, start: 50, sess: 90, pgrp: 100}, // the caller's own child
		{pid: 600, ppid: self, start: 60, sess: 90, pgrp: 100}, // pid 600 was known with another start time
		{pid: 700, ppid: 1, start: 70, sess: 700, pgrp: 700},   // unrelated
		{pid: 701, ppid: 700, start: 71, sess: 700, pgrp: 700}, // unrelated
		// A daemon's double fork: 800 called setsid(), forked 801 and died.
		{pid: 800, ppid: self, start: 80, state: 'Z', sess: 800, pgrp: 800},
		{pid: 801, ppid: self, start: 81, sess: 800, pgrp: 800}, // carries our environment
		// A zombie of the caller's, in a session of its own.
		{pid: 900, ppid: self, start: 90, state: 'Z', sess: 900, pgrp: 900},
		// A zombie of the caller's, in the caller's session and group.
		{pid: 901, ppid: self, start: 91, state: 'Z', sess: 90, pgrp: 100},
	}
	known := map[int]uint64{300: 30, 600: 59}
	asked := map[int]bool{}
	ours := func(p proc) bool { asked[p.pid] = true; return p.pid == 400 || p.pid == 801 }
	got := descendants(procs, self, 200, known, ours)
	want := []int{200, 201, 202, 300, 301, 400, 800, 801}
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, want) {
		t.Errorf("descendants = %v, want %v", keys, want)
	}
	if asked[200] || asked[300] || asked[201] || asked[800] || !asked[500] || !asked[600] {
		t.Errorf("ours asked about %v", asked)
	}
	// After the main process is gone its children are orphans of self.
	got = descendants(procs, self, 0, known, func(proc) bool { return false })
	if keys := slices.Sorted(maps.Keys(got)); !slices.Equal(keys, []int{300, 301}) {
		t.Errorf("without main: %v", keys)
	}
}
