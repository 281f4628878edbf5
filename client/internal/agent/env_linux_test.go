package agent

import (
	"slices"
	"testing"
	"time"
)

func TestChildEnv(t *testing.T) {
	base := []string{"PATH=/bin", "LD_PRELOAD=/a.so:/lib.so /b.so", "DPF_AGENT_SOCK=/old", "DPF_MAP_TIMEOUT_MS=1", "X=y=z"}
	got := childEnv(base, "/tmp/s/agent.sock", "/lib.so", 6*time.Second)
	want := []string{"PATH=/bin", "X=y=z", "DPF_AGENT_SOCK=/tmp/s/agent.sock", "DPF_MAP_TIMEOUT_MS=6000", "LD_PRELOAD=/lib.so /a.so /b.so"}
	if !slices.Equal(got, want) {
		t.Errorf("got  %q\nwant %q", got, want)
	}
	got = childEnv([]string{"LD_PRELOAD=/a.so"}, "/s", "", time.Second)
	want = []string{"DPF_AGENT_SOCK=/s", "DPF_MAP_TIMEOUT_MS=1000", "LD_PRELOAD=/a.so"}
	if !slices.Equal(got, want) {
		t.Errorf("no lib: got %q", got)
	}
	if got := childEnv(nil, "/s", "", time.Second); len(got) != 2 {
		t.Errorf("no preload at all: %q", got)
	}
}
