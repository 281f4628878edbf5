package daemon

import (
	"encoding/json"
	"log/slog"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/server"
)

// TestStatusCounterNames: the counters of the status the control API
// sends (and rpcd and D-Bus pass on) are exactly control.CounterNames,
// which the CLI and the LuCI Status page label.
func TestStatusCounterNames(t *testing.T) {
	cfg := config.Default()
	cfg.LANInterfaces, cfg.WANInterface = []string{"br-test"}, "wan-test"
	fw := fakeFirewall{leasetest.NewFirewall()}
	d := &Daemon{log: slog.New(slog.DiscardHandler), clk: clock.Real{}, started: time.Now(), cfg: cfg, fw: fw,
		lan: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	d.m = lease.New(lease.Config{Policy: d.policy(), Firewall: fw, Store: leasetest.NewStore()})
	d.srv = server.New(server.Config{Manager: d.m, ExternalAddr: d.ExternalAddr})

	b, err := json.Marshal(d.Status())
	if err != nil {
		t.Fatal(err)
	}
	var st struct {
		Counters map[string]json.RawMessage `json:"counters"`
	}
	if err := json.Unmarshal(b, &st); err != nil {
		t.Fatal(err)
	}
	var got []string
	for name := range st.Counters {
		got = append(got, name)
	}
	slices.Sort(got)
	want := slices.Sorted(slices.Values(control.CounterNames))
	if !slices.Equal(got, want) || len(slices.Compact(slices.Clone(want))) != len(want) {
		t.Errorf("status counters %q, want control.CounterNames %q (each once)", got, want)
	}
}
