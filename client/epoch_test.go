package client

import (
	"testing"
	"time"
)

func TestEpochTracker(t *testing.T) {
	t0 := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	type obs struct {
		server uint32
		after  time.Duration // client time since t0
		lost   bool
	}
	tests := []struct {
		name string
		rule epochRule
		obs  []obs
	}{
		{"first observation never loss", rulePCP, []obs{{0, 0, false}}},
		{"steady clocks", rulePCP, []obs{{1000, 0, false}, {1060, time.Minute, false}, {1120, 2 * time.Minute, false}}},
		{"server restarted to 0", rulePCP, []obs{{1000, 0, false}, {0, time.Second, true}}},
		{"one second backwards tolerated", rulePCP, []obs{{1000, 0, false}, {999, 0, false}}},
		{"two seconds backwards is loss", rulePCP, []obs{{1000, 0, false}, {998, 0, true}}},
		{"server slower than client: restarted meanwhile", rulePCP,
			// Cdelta 100, Sdelta 10: 10+2 < 100-6.25.
			[]obs{{1000, 0, false}, {1010, 100 * time.Second, true}}},
		{"server slightly slow within slack", rulePCP,
			// Cdelta 100, Sdelta 92: 94 < 93.75 is false.
			[]obs{{1000, 0, false}, {1092, 100 * time.Second, false}}},
		{"server slow just past slack", rulePCP,
			// Cdelta 100, Sdelta 91: 93 < 93.75.
			[]obs{{1000, 0, false}, {1091, 100 * time.Second, true}}},
		{"server much faster than client", rulePCP,
			// Cdelta 10, Sdelta 100: 12 < 93.75.
			[]obs{{1000, 0, false}, {1100, 10 * time.Second, true}}},
		{"server slightly fast within slack", rulePCP,
			// Cdelta 100, Sdelta 108: 102 < 101.25 is false.
			[]obs{{1000, 0, false}, {1108, 100 * time.Second, false}}},
		{"reference moves after a loss", rulePCP, []obs{{1000, 0, false}, {0, time.Second, true}, {5, 6 * time.Second, false}}},
		{"client clock backwards counts as zero", rulePCP, []obs{{1000, time.Minute, false}, {1000, 0, false}}},

		{"NAT-PMP steady", ruleNATPMP, []obs{{500, 0, false}, {560, time.Minute, false}}},
		{"NAT-PMP restart", ruleNATPMP, []obs{{500, 0, false}, {3, 5 * time.Second, true}}},
		{"NAT-PMP 7/8 rule holds", ruleNATPMP,
			// Expected at least 500 + 87.5 - 2 = 585.5.
			[]obs{{500, 0, false}, {586, 100 * time.Second, false}}},
		{"NAT-PMP 7/8 rule fails", ruleNATPMP, []obs{{500, 0, false}, {585, 100 * time.Second, true}}},
		{"NAT-PMP fast server is fine", ruleNATPMP, []obs{{500, 0, false}, {5000, time.Second, false}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var e epochTracker
			for i, o := range tt.obs {
				if got := e.observe(o.server, t0.Add(o.after), tt.rule); got != o.lost {
					t.Fatalf("observation %d (server %d at +%v): lost = %v, want %v", i, o.server, o.after, got, o.lost)
				}
			}
		})
	}
	var e epochTracker
	e.observe(1000, t0, rulePCP)
	e.reset()
	if e.observe(0, t0.Add(time.Second), rulePCP) {
		t.Fatal("loss reported after reset")
	}
}
