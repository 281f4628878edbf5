package systest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/bench"
)

// benchShortTimeout bounds the whole short benchmark (it takes about a
// minute on an idle 2-core machine).
const benchShortTimeout = 4 * time.Minute

// TestBenchShort runs the benchmark harness of `make bench` in its quick
// form (N = 100, one run) against dpfd with both backends and the installed
// miniupnpd-nftables, and checks that it produced every figure and a
// report. It asserts nothing about speed. The report goes to
// $DPF_ARTIFACTS/bench-short.md (and .json) when that is set.
func TestBenchShort(t *testing.T) {
	needTools(t)
	needMiniupnpd(t)
	c := bench.Quick(bench.Defaults())
	c.Targets = []bench.Target{bench.DpfdNftables, bench.DpfdIptables, bench.MiniupnpdNftables}
	c.DpfdBin = dpfdBin
	c.WorkDir = t.TempDir()
	c.CacheDir = "" // the installed miniupnpd-nftables only
	c.NamePrefix = fmt.Sprintf("dpfbst%d", os.Getpid()%100000)
	c.Logf = t.Logf
	ctx, cancel := context.WithTimeout(context.Background(), benchShortTimeout)
	defer cancel()
	res, err := bench.Run(ctx, c)
	if err != nil {
		t.Fatalf("bench: %v", err)
	}
	for _, e := range res.Errors {
		t.Errorf("bench error: %s", e)
	}
	const n = 100
	for _, tg := range c.Targets {
		for _, p := range []bench.Proto{bench.NATPMP, bench.PCP} {
			for _, m := range []string{bench.MFillRate, bench.MFillP50, bench.MFillP99, bench.MMapOneP50, bench.MDelOneP50} {
				if s, ok := res.Figure(tg, p, n, m); !ok || s.Median <= 0 {
					t.Errorf("%s %s N=%d: %s missing or zero (%+v)", tg, p, n, m, s)
				}
			}
			if s, ok := res.Figure(tg, p, n, bench.MFillReached); !ok || s.Median != n {
				t.Errorf("%s %s: made %v of %d mappings", tg, p, s.Median, n)
			}
			if !tg.IsDpfd() {
				continue
			}
			// The disk probe beside dpfd's one-more samples, sized as
			// its journal record of one map (a put: over 100 bytes).
			if s, ok := res.Figure(tg, p, n, bench.MSyncP99); !ok || s.Median <= 0 {
				t.Errorf("%s %s: no disk p99 beside the map p99 (%+v)", tg, p, s)
			}
			if s, ok := res.Figure(tg, p, n, bench.MSyncBytes); !ok || s.Median < 100 {
				t.Errorf("%s %s: disk probe write size %v", tg, p, s.Median)
			}
			if _, ok := res.Figure(tg, p, n, bench.MMapOverSync); !ok {
				t.Errorf("%s %s: no map p99 minus disk p99", tg, p)
			}
		}
		for _, f := range []struct {
			n      int
			metric string
		}{{0, bench.MConnRate}, {n, bench.MConnRate}, {0, bench.MConnTwin}, {n, bench.MConnTwin}, {n, bench.MConnRatio}, {n, bench.MRSS}, {n, bench.MCPU}, {n, bench.MRestart}} {
			// CPU time is counted in 10 ms ticks and may round to 0.
			if s, ok := res.Figure(tg, "", f.n, f.metric); !ok || (s.Median <= 0 && f.metric != bench.MCPU) {
				t.Errorf("%s N=%d: %s missing or zero (%+v)", tg, f.n, f.metric, s)
			}
		}
		if s, ok := res.Figure(tg, "", n, bench.MRestored); !ok || s.Median != n+1 {
			t.Errorf("%s: %v of %d rules back after the restart", tg, s.Median, n+1)
		}
		// Writes may be 0 in a short run (dpfd checkpoints renewals),
		// but the figure must exist.
		// The device count needs the write pass's own file system on a
		// loop device, which CI has (root).
		for _, m := range []string{bench.MWritePerH, bench.MDevicePerH} {
			if _, ok := res.Figure(tg, "", 1000, m); !ok {
				t.Errorf("%s: no lease write figure %s", tg, m)
			}
		}
	}
	var md, js bytes.Buffer
	res.WriteMarkdown(&md)
	if err := res.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"## Goals (issues 6 and 16)", "dpfd-nftables / miniupnpd-nftables", "N=100 fill req/s", "restart",
		"### Command lines and configurations", "enable_upnp=yes", "secure_mode=yes"} {
		if !strings.Contains(md.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, md.String())
		}
	}
	// Each daemon's exact command line is in the report: miniupnpd in the
	// background (-f CONF -P PIDFILE, no -d), dpfd as its init script runs
	// it; neither with a debug or verbose flag.
	if len(res.Commands) != len(c.Targets) {
		t.Errorf("command lines of %d targets, want %d: %+v", len(res.Commands), len(c.Targets), res.Commands)
	}
	for _, cmd := range res.Commands {
		line := strings.Join(cmd.Argv, " ")
		if !strings.Contains(md.String(), "    "+line+"\n") {
			t.Errorf("report lacks %s's command line %q", cmd.Target, line)
		}
		for _, a := range cmd.Argv[1:] {
			if a == "-d" || strings.HasPrefix(a, "-v") || a == "debug" {
				t.Errorf("%s ran with %q: %q", cmd.Target, a, line)
			}
		}
		if !cmd.Target.IsDpfd() && (len(cmd.Argv) != 5 || cmd.Argv[1] != "-f" || cmd.Argv[3] != "-P") {
			t.Errorf("miniupnpd's command line %q, want BIN -f CONF -P PIDFILE", line)
		}
	}
	// miniupnpd's lease file is on tmpfs, as OpenWrt has it: nothing
	// reaches the disk, and the report says so.
	if s, ok := res.Figure(bench.MiniupnpdNftables, "", 1000, bench.MDevicePerH); !ok || s.Median != 0 {
		t.Errorf("miniupnpd's device writes %+v, want 0 (tmpfs)", s)
	}
	if dir := os.Getenv(artifactsEnv); dir != "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{"bench-short.md": md.Bytes(), "bench-short.json": js.Bytes()} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	if t.Failed() {
		t.Logf("report:\n%s", md.String())
	}
}
