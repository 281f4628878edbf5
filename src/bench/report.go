package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"runtime"
	"slices"
	"strings"
)

// WriteJSON writes the raw measurements.
func (r *Results) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// key identifies one figure across runs.
type key struct {
	Target Target
	Proto  Proto
	N      int
	Metric string
	Arch   string
}

// Figures groups the measurements of all runs by figure.
func (r *Results) Figures() map[key]Spread {
	vals := map[key][]float64{}
	for _, m := range r.Measurements {
		if m.Value < 0 { // not reached: left out of the spread
			continue
		}
		k := key{m.Target, m.Proto, m.N, m.Metric, m.Arch}
		vals[k] = append(vals[k], m.Value)
	}
	out := map[key]Spread{}
	for k, v := range vals {
		out[k] = spreadOf(v)
	}
	return out
}

// Figure returns the median spread of one figure and whether it exists.
func (r *Results) Figure(t Target, p Proto, n int, metric string) (Spread, bool) {
	s, ok := r.Figures()[key{t, p, n, metric, ""}]
	return s, ok
}

// notes collects the distinct notes of one figure.
func (r *Results) notes(t Target, p Proto, n int, metric string) []string {
	var out []string
	for _, m := range r.Measurements {
		if m.Target == t && m.Proto == p && m.N == n && m.Metric == metric && m.Note != "" && !slices.Contains(out, m.Note) {
			out = append(out, m.Note)
		}
	}
	return out
}

func fmtNum(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	case v >= 0.1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3f", v)
	}
}

func fmtSpread(s Spread, ok bool) string {
	if !ok {
		return "–"
	}
	if s.Runs == 1 || s.Min == s.Max {
		return fmtNum(s.Median)
	}
	return fmt.Sprintf("%s (%s–%s)", fmtNum(s.Median), fmtNum(s.Min), fmtNum(s.Max))
}

// rowSpec is one table row: a metric at N for a protocol.
type rowSpec struct {
	label  string
	proto  Proto
	n      int
	metric string
}

// miniFor returns the miniupnpd target dpfd target t is compared with: the
// same backend when it was measured, else the other.
func (r *Results) miniFor(t Target, present map[Target]bool) Target {
	want := MiniupnpdNftables
	if t == DpfdIptables {
		want = MiniupnpdIptables
	}
	if present[want] {
		return want
	}
	if present[MiniupnpdNftables] {
		return MiniupnpdNftables
	}
	return MiniupnpdIptables
}

func (r *Results) table(w io.Writer, targets []Target, rows []rowSpec) {
	present := map[Target]bool{}
	for _, t := range targets {
		present[t] = true
	}
	var dpfds []Target
	for _, t := range targets {
		if t.IsDpfd() {
			dpfds = append(dpfds, t)
		}
	}
	hdr := []string{"figure"}
	for _, t := range targets {
		hdr = append(hdr, string(t))
	}
	for _, d := range dpfds {
		hdr = append(hdr, fmt.Sprintf("%s / %s", d, r.miniFor(d, present)))
	}
	fmt.Fprintf(w, "| %s |\n|%s\n", strings.Join(hdr, " | "), strings.Repeat("---|", len(hdr)))
	figs := r.Figures()
	for _, row := range rows {
		cells := []string{row.label}
		for _, t := range targets {
			s, ok := figs[key{t, row.proto, row.n, row.metric, ""}]
			c := fmtSpread(s, ok)
			if ns := r.notes(t, row.proto, row.n, row.metric); len(ns) > 0 && ok {
				c += " †"
			}
			cells = append(cells, c)
		}
		for _, d := range dpfds {
			a, ok1 := figs[key{d, row.proto, row.n, row.metric, ""}]
			b, ok2 := figs[key{r.miniFor(d, present), row.proto, row.n, row.metric, ""}]
			if ok1 && ok2 && b.Median != 0 {
				cells = append(cells, fmt.Sprintf("%.2f×", a.Median/b.Median))
			} else {
				cells = append(cells, "–")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	fmt.Fprintln(w)
}

// goal is one target of issue 6.
type goal struct {
	text string
	// check returns the dpfd figure, whether it meets the goal, and false
	// in ok when the figure was not measured.
	check func(r *Results, t Target) (fig string, pass, ok bool)
}

func (r *Results) goals() []goal {
	present := map[Target]bool{}
	for _, t := range r.Config.Targets {
		present[t] = true
	}
	ratioGoal := func(p Proto) goal {
		return goal{fmt.Sprintf("N=10,000 fill (%s) ≥ 50× miniupnpd's rate", p), func(r *Results, t Target) (string, bool, bool) {
			a, ok := r.Figure(t, p, 10000, MFillRate)
			// When miniupnpd's budget ran out before N, its figure at N
			// is the rate it reached.
			b, ok2 := r.Figure(r.miniFor(t, present), p, 10000, MFillRate)
			if !ok || !ok2 || b.Median == 0 {
				return "", false, false
			}
			return fmt.Sprintf("%.0f req/s = %.1f×", a.Median, a.Median/b.Median), a.Median >= 50*b.Median, true
		}}
	}
	abs := func(text string, p Proto, n int, metric string, limit float64, unit string, below bool) goal {
		return goal{text, func(r *Results, t Target) (string, bool, bool) {
			a, ok := r.Figure(t, p, n, metric)
			if !ok {
				return "", false, false
			}
			pass := a.Median <= limit
			if !below {
				pass = a.Median >= limit
			}
			return fmtNum(a.Median) + " " + unit, pass, true
		}}
	}
	return []goal{
		ratioGoal(NATPMP),
		ratioGoal(PCP),
		{"N=10,000 one more map (NAT-PMP): p50 < 1 ms and ≥ 50× faster than miniupnpd", func(r *Results, t Target) (string, bool, bool) {
			a, ok := r.Figure(t, NATPMP, 10000, MMapOneP50)
			if !ok {
				return "", false, false
			}
			b, ok2 := r.Figure(r.miniFor(t, present), NATPMP, 10000, MMapOneP50)
			fig := fmtNum(a.Median) + " ms"
			pass := a.Median < 1
			if ok2 && a.Median > 0 {
				fig += fmt.Sprintf(" (%.0f× faster)", b.Median/a.Median)
				pass = pass && b.Median >= 50*a.Median
			} else {
				fig += " (miniupnpd did not reach N)"
			}
			return fig, pass, true
		}},
		abs("N=1,000 map latency p99 < 2 ms (NAT-PMP)", NATPMP, 1000, MFillP99, 2, "ms", true),
		abs("N=1,000 map latency p99 < 2 ms (PCP)", PCP, 1000, MFillP99, 2, "ms", true),
		{"inbound connections with 10,000 pinholes ≥ 90 % of none (nftables)", func(r *Results, t Target) (string, bool, bool) {
			a, ok := r.Figure(t, "", 10000, MConnRate)
			b, ok2 := r.Figure(t, "", 0, MConnRate)
			if !ok || !ok2 || b.Median == 0 {
				return "", false, false
			}
			return fmt.Sprintf("%.0f %%", 100*a.Median/b.Median), a.Median >= 0.9*b.Median, true
		}},
		abs("RSS ≤ 16 MB with 10,000 leases", "", 10000, MRSS, 16, "MB", true),
		abs("all 10,000 rules back ≤ 1 s after a restart", "", 10000, MRestart, 1, "s", true),
		{"≤ 1 MB written per hour (1,000 leases renewing every 60 s)", func(r *Results, t Target) (string, bool, bool) {
			a, ok := r.Figure(t, "", writeLeases, MWritePerH)
			if !ok || r.Config.WriteDuration < writeCheckpoint {
				// Shorter than one checkpoint interval, the run
				// cannot show dpfd's deferred writes.
				return "", false, false
			}
			return fmt.Sprintf("%.0f kB/h", a.Median/1000), a.Median <= 1e6, true
		}},
	}
}

// sixMB is the binary size goal, 6 MiB.
const sixMB = 6 << 20

// WriteMarkdown writes the report.
func (r *Results) WriteMarkdown(w io.Writer) {
	c := r.Config
	host, _ := os.Hostname()
	fmt.Fprintf(w, "# DPF benchmark: dpfd against miniupnpd\n\n")
	fmt.Fprintf(w, "Started %s, took %s, on %s (%d CPUs, %s). Sizes %v, %d run(s) per figure, %d LAN hosts × %d requests in flight.\n\n",
		r.Started.UTC().Format("2006-01-02 15:04 MST"), r.Elapsed.Round(1e9), host, runtime.NumCPU(), runtime.GOARCH, c.Sizes, c.Runs, c.Hosts, c.InFlight)
	fmt.Fprintf(w, "Each cell is the median of the runs with the spread (min–max) in brackets; the last columns are dpfd's figure divided by miniupnpd's. † marks figures with notes below.\n\n")
	var dpfds []Target
	for _, t := range c.Targets {
		if t.IsDpfd() {
			dpfds = append(dpfds, t)
		}
	}
	fmt.Fprintf(w, "## Goals of issue 6\n\n| goal | %s |\n|---|%s\n", strings.Join(targetNames(dpfds), " | "), strings.Repeat("---|", len(dpfds)))
	for _, g := range r.goals() {
		cells := []string{g.text}
		for _, t := range dpfds {
			fig, pass, ok := g.check(r, t)
			switch {
			case !ok:
				cells = append(cells, "n/a (not measured)")
			case pass:
				cells = append(cells, fig+" **PASS**")
			default:
				cells = append(cells, fig+" **MISS**")
			}
		}
		fmt.Fprintf(w, "| %s |\n", strings.Join(cells, " | "))
	}
	var mips []string
	for _, m := range r.Measurements {
		if m.Metric == MBinary && m.Arch == "mipsel_24kc" {
			v := "MISS"
			if m.Value <= sixMB {
				v = "PASS"
			}
			mips = append(mips, fmt.Sprintf("%.2f MiB **%s**", m.Value/(1<<20), v))
		}
	}
	if len(mips) == 0 {
		mips = []string{"n/a (not measured)"}
	}
	fmt.Fprintf(w, "| static mipsle dpfd ≤ 6 MiB (all targets built alike) | %s |\n\n", strings.Join(mips, ", "))

	for _, p := range []Proto{NATPMP, PCP} {
		fmt.Fprintf(w, "## Fill and single requests (%s)\n\n", p)
		var rows []rowSpec
		for _, n := range c.Sizes {
			rows = append(rows,
				rowSpec{fmt.Sprintf("N=%d fill req/s", n), p, n, MFillRate},
				rowSpec{fmt.Sprintf("N=%d fill req/s at the end (last step)", n), p, n, MFillEndRate},
				rowSpec{fmt.Sprintf("N=%d fill latency p50 ms", n), p, n, MFillP50},
				rowSpec{fmt.Sprintf("N=%d fill latency p99 ms", n), p, n, MFillP99},
				rowSpec{fmt.Sprintf("N=%d mappings made", n), p, n, MFillReached},
				rowSpec{fmt.Sprintf("N=%d one more map p50 ms", n), p, n, MMapOneP50},
				rowSpec{fmt.Sprintf("N=%d one delete p50 ms", n), p, n, MDelOneP50})
		}
		r.table(w, c.Targets, rows)
	}
	fmt.Fprintf(w, "## Inbound connections, memory, CPU, restart (NAT-PMP fill)\n\n")
	rows := []rowSpec{{"one pinhole: new TCP connections/s", "", 0, MConnRate}}
	for _, n := range c.Sizes {
		rows = append(rows,
			rowSpec{fmt.Sprintf("N=%d pinholes: new TCP connections/s", n), "", n, MConnRate},
			rowSpec{fmt.Sprintf("N=%d RSS MB", n), "", n, MRSS},
			rowSpec{fmt.Sprintf("N=%d CPU s for the fill", n), "", n, MCPU},
			rowSpec{fmt.Sprintf("N=%d restart: s until every rule is back", n), "", n, MRestart},
			rowSpec{fmt.Sprintf("N=%d restart: rules back", n), "", n, MRestored})
	}
	r.table(w, c.Targets, rows)
	fmt.Fprintf(w, "## Lease writes (1,000 leases renewing every 60 s)\n\n")
	r.table(w, c.Targets, []rowSpec{
		{"bytes/hour written to storage (write_bytes)", "", writeLeases, MWritePerH},
		{"bytes/hour passed to write() (wchar)", "", writeLeases, MWCharPerH},
	})
	fmt.Fprintf(w, "## dpfd binary size per OpenWrt target\n\n| target | bytes | MiB | built |\n|---|---|---|---|\n")
	for _, m := range r.Measurements {
		if m.Metric == MBinary {
			fmt.Fprintf(w, "| %s | %.0f | %.2f | %s |\n", m.Arch, m.Value, m.Value/(1<<20), m.Note)
		}
	}
	fmt.Fprintf(w, "\n## How it was measured\n\n%s\n", method)
	fmt.Fprintf(w, "## Notes\n\n")
	seen := map[string]bool{}
	for _, m := range r.Measurements {
		if m.Note == "" || m.Metric == MBinary {
			continue
		}
		line := fmt.Sprintf("- %s %s N=%d run %d, %s: %s", m.Target, m.Proto, m.N, m.Run, m.Metric, m.Note)
		if !seen[line] {
			seen[line] = true
			fmt.Fprintln(w, line)
		}
	}
	for _, e := range r.Errors {
		fmt.Fprintf(w, "- error: %s\n", strings.ReplaceAll(e, "\n", " "))
	}
}

func targetNames(ts []Target) []string {
	var out []string
	for _, t := range ts {
		out = append(out, string(t))
	}
	return out
}

const method = `- Every run of every target gets a fresh lab (network namespaces: router, internet host, LAN hosts) and a fresh daemon. The fill sends NAT-PMP or PCP MAP requests for TCP ports from every LAN host, a fixed number in flight per host, each from its own UDP socket; a request is resent every 4 s and counts from its first send. The fill goes up through the sizes; "fill req/s" at N is all mappings 0..N over the fill time, latencies p50/p99 over all of them, "at the end" the rate of the last step.
- A fill step has a time budget; when it runs out the report gives the rate reached and the number of mappings made, and larger N are skipped for that target.
- One more map / one delete: sequential map and delete of an extra port from one LAN host at N, median of the samples.
- Inbound connections: 4 clients on the internet host open TCP connections to the router's WAN address on a mapped port (a LAN server accepts and closes them; the clients close with a reset so TIME_WAIT does not limit them) for a fixed time; "one pinhole" is before the fill.
- RSS: VmRSS of /proc/PID/status at N. CPU: utime+stime of /proc/PID/stat spent during the fill steps up to N.
- Restart: dpfd is stopped with SIGTERM, miniupnpd with SIGKILL (on SIGTERM it deletes its mappings and its lease file); then the daemon's rules are removed as a reboot would (dpfd cleanup; flushing miniupnpd's chains), the daemon is started again and the ruleset (nft list ruleset, iptables-save) is polled until every mapped external port is back; the time counts from the daemon's start. miniupnpd restores from its lease_file option (it does not persist mappings otherwise).
- Lease writes: 1,000 NAT-PMP leases renewing every 60 s with lifetime 120 s (dpfd: checkpoint_interval 300 s) run with every time constant divided by 10; write_bytes of /proc/PID/io over the run is scaled to an hour of the unscaled workload (bytes × 3600 / (10 × run seconds)). The work directory is on a disk file system, so write_bytes counts real writeback. /proc/PID/io includes the children a daemon ran and reaped (dpfd's iptables backend runs iptables tools). dpfd logs warnings only; miniupnpd logs to the harness's syslog socket (see below), not to disk.
- miniupnpd runs in the foreground (-d) in a private mount namespace whose /dev/log is a socket of the harness: without a syslog daemon it writes every log line to /dev/console (about 1 ms a line), which would dominate its figures.
- Binary sizes: dpfd as built by openwrt/ipkbuild (make openwrt; -openwrt-build builds afresh, else bin/openwrt is read and its build time shown).
`
