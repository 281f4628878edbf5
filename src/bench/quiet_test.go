package bench

import (
	"strings"
	"testing"
)

func TestParseCPULine(t *testing.T) {
	busy, total, err := parseCPULine("cpu  100 5 50 1000 20 3 7 2 0 0\n")
	if err != nil || busy != 167 || total != 1187 {
		t.Fatalf("parseCPULine = %d, %d, %v; want 167, 1187, nil", busy, total, err)
	}
	for _, bad := range []string{"", "cpu0 1 2 3 4 5", "cpu 1 2 3", "cpu 1 2 x 4 5", "cpu 18446744073709551615 1 0 0 0"} {
		if _, _, err := parseCPULine(bad); err == nil {
			t.Errorf("parseCPULine(%q) accepted", bad)
		}
	}
	// The machine's own counters: busy is part of total, total grows.
	b0, t0, err := cpuTimes()
	if err != nil || t0 == 0 || b0 > t0 {
		t.Fatalf("cpuTimes = %d, %d, %v", b0, t0, err)
	}
}

// FuzzParseCPULine: any line is parsed or refused, never a panic, and busy
// never exceeds total.
func FuzzParseCPULine(f *testing.F) {
	f.Add("cpu  100 5 50 1000 20 3 7 2 0 0\n")
	f.Add("cpu 1 2 3 4 5")
	f.Add(strings.Repeat("9", 30))
	f.Fuzz(func(t *testing.T, line string) {
		busy, total, err := parseCPULine(line)
		if err == nil && busy > total {
			t.Fatalf("busy %d > total %d for %q", busy, total, line)
		}
	})
}
