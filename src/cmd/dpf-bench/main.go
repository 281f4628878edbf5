// Command dpf-bench runs the benchmark of issue 6: dpfd (nftables and
// iptables backends) against miniupnpd (Debian's nftables and iptables
// builds) in network namespaces, and writes a markdown report and the raw
// measurements as JSON. It needs root. `make bench` runs it.
//
//	dpf-bench [-quick] [-runs 3] [-sizes 100,1000,10000] [-targets ...]
//	          [-dpfd bin/dpfd] [-out bench-report.md] [-json bench-report.json]
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dpf-router/dpf/src/bench"
)

func main() {
	os.Exit(run())
}

func run() int {
	def := bench.Defaults()
	var (
		quick   = flag.Bool("quick", false, "CI short form: N=100, one run, short measurements")
		runs    = flag.Int("runs", def.Runs, "runs per figure (the report shows the median and the spread)")
		sizes   = flag.String("sizes", "100,1000,10000", "comma-separated numbers of mappings N")
		targets = flag.String("targets", strings.Join(names(def.Targets), ","), "comma-separated targets")
		dpfd    = flag.String("dpfd", "bin/dpfd", "dpfd binary")
		out     = flag.String("out", "bench-report.md", "markdown report")
		jsonOut = flag.String("json", "", "raw measurements as JSON (default: the report's name with .json)")
		cache   = flag.String("cache", "bin/bench-cache", "where miniupnpd packages are downloaded and unpacked")
		work    = flag.String("work", "", "work directory for configurations, databases and logs (default: a new one under /var/tmp)")
		owrt    = flag.String("openwrt", "bin/openwrt", "OpenWrt binaries (<arch>/dpfd); built when absent; empty to skip")
		owrtNew = flag.Bool("openwrt-build", false, "build fresh OpenWrt binaries (go run ./openwrt/ipkbuild) instead of reading -openwrt")
		budget  = flag.Duration("budget", def.PhaseBudget, "time budget of each fill step (a slow daemon reports the rate it reached)")
		hosts   = flag.Int("hosts", def.Hosts, "LAN hosts sending requests")
		flight  = flag.Int("inflight", def.InFlight, "requests in flight per LAN host")
	)
	flag.Parse()
	c := def
	if *quick {
		c = bench.Quick(c)
	}
	set := map[string]bool{}
	flag.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if set["runs"] || !*quick {
		c.Runs = *runs
	}
	if set["sizes"] || !*quick {
		c.Sizes = nil
		for _, s := range strings.Split(*sizes, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(s))
			if err != nil || n < 1 || n > 20000 {
				fmt.Fprintf(os.Stderr, "dpf-bench: bad size %q (1..20000)\n", s)
				return 2
			}
			if len(c.Sizes) > 0 && n <= c.Sizes[len(c.Sizes)-1] {
				fmt.Fprintln(os.Stderr, "dpf-bench: sizes must ascend")
				return 2
			}
			c.Sizes = append(c.Sizes, n)
		}
	}
	if set["budget"] || !*quick {
		c.PhaseBudget = *budget
	}
	c.Hosts, c.InFlight = *hosts, *flight
	c.Targets = nil
	for _, t := range strings.Split(*targets, ",") {
		tt := bench.Target(strings.TrimSpace(t))
		if !contains(bench.AllTargets, tt) {
			fmt.Fprintf(os.Stderr, "dpf-bench: unknown target %q (one of %s)\n", t, strings.Join(names(bench.AllTargets), ", "))
			return 2
		}
		c.Targets = append(c.Targets, tt)
	}
	var err error
	if c.DpfdBin, err = filepath.Abs(*dpfd); err != nil {
		fmt.Fprintln(os.Stderr, "dpf-bench:", err)
		return 1
	}
	c.CacheDir = *cache
	c.RepoDir, _ = os.Getwd()
	c.BuildOpenWrt = *owrtNew
	if *owrt != "" {
		c.OpenWrtBin, _ = filepath.Abs(*owrt)
	}
	if *work == "" {
		// /var/tmp rather than /tmp: write counters need a disk, not tmpfs.
		if *work, err = os.MkdirTemp("/var/tmp", "dpf-bench-"); err != nil {
			fmt.Fprintln(os.Stderr, "dpf-bench:", err)
			return 1
		}
		defer os.RemoveAll(*work)
	}
	c.WorkDir = *work
	c.Logf = func(format string, args ...any) {
		fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, args...)...)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "dpf-bench: needs root (network namespaces, netfilter)")
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := bench.Run(ctx, c)
	if res == nil {
		fmt.Fprintln(os.Stderr, "dpf-bench:", err)
		return 1
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "dpf-bench: stopped early:", err)
	}
	if *jsonOut == "" {
		*jsonOut = strings.TrimSuffix(*out, filepath.Ext(*out)) + ".json"
	}
	if werr := writeFiles(res, *out, *jsonOut); werr != nil {
		fmt.Fprintln(os.Stderr, "dpf-bench:", werr)
		return 1
	}
	fmt.Fprintf(os.Stderr, "dpf-bench: report in %s, raw data in %s\n", *out, *jsonOut)
	for _, e := range res.Errors {
		fmt.Fprintln(os.Stderr, "dpf-bench: error:", e)
	}
	if err != nil || len(res.Errors) > 0 {
		return 1
	}
	return 0
}

func writeFiles(res *bench.Results, md, js string) error {
	f, err := os.Create(md)
	if err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	res.WriteMarkdown(f)
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing report: %w", err)
	}
	j, err := os.Create(js)
	if err != nil {
		return fmt.Errorf("writing raw data: %w", err)
	}
	if err := res.WriteJSON(j); err != nil {
		j.Close()
		return fmt.Errorf("writing raw data: %w", err)
	}
	return j.Close()
}

func names(ts []bench.Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, string(t))
	}
	return out
}

func contains(ts []bench.Target, t bench.Target) bool {
	for _, x := range ts {
		if x == t {
			return true
		}
	}
	return false
}
