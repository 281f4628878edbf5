// Package bench measures dpfd against miniupnpd in a network-namespace lab
// (src/internal/lab): a NAT-PMP and PCP load generator fills N mappings
// from several LAN hosts with a few requests in flight each, and the
// harness records request rates and latencies, the cost of one more map
// and delete at N, inbound TCP connection rates through the pinholes, the
// daemon's memory and CPU time, the time to restore every rule after a
// restart, the bytes written for lease renewals, and dpfd's OpenWrt binary
// sizes. Run collects the raw measurements; WriteMarkdown and WriteJSON
// report them. It needs root.
package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/store"
)

// Config chooses what Run measures. Zero fields take the defaults of
// Defaults.
type Config struct {
	Targets  []Target
	Sizes    []int // N values, ascending
	Runs     int   // runs per figure (each figure is the median)
	Hosts    int   // LAN hosts sending requests
	InFlight int   // requests in flight per host

	DpfdBin  string // dpfd binary for the host
	CacheDir string // where miniupnpd packages are unpacked
	WorkDir  string // configurations, databases, logs (on a real disk: write counters)
	RepoDir  string // repository root, for the OpenWrt build
	// OpenWrtBin holds <arch>/dpfd; built with openwrt/ipkbuild when absent.
	OpenWrtBin string
	// BuildOpenWrt builds fresh OpenWrt binaries into WorkDir instead of
	// reading OpenWrtBin (which may be older than the tree).
	BuildOpenWrt bool

	PhaseBudget    time.Duration // bound of each fill step
	RestartBudget  time.Duration // bound of each wait for the rules after a restart
	RequestTimeout time.Duration // bound of one request, retransmissions included
	// ConnWindow is the length of one inbound connection window; each
	// connection rate is the median of ConnWindows windows.
	ConnWindow  time.Duration
	ConnWindows int
	// ConnWarmup is the length of the discarded connection window before
	// the first (one pinhole) measurement of a lab, which runs slower on
	// cold caches.
	ConnWarmup time.Duration
	// Samples is the most sequential one-more map/delete pairs at each N;
	// SampleBudget bounds their time, but at least minSamples are taken.
	Samples       int
	SampleBudget  time.Duration
	WriteDuration time.Duration // length of the renewal write measurement
	// WriteLeases is the number of renewing leases in the write
	// measurement (the figure is scaled to 1,000 leases).
	WriteLeases int
	NamePrefix  string // namespace name prefix (unique per process)

	Logf func(format string, args ...any)

	// dbDir, when set, holds the daemons' lease databases instead of
	// their work directories (the write pass's own file system).
	dbDir string
}

// Defaults returns the configuration of a full `make bench`.
func Defaults() Config {
	return Config{
		Targets:        AllTargets,
		Sizes:          []int{100, 1000, 10000},
		Runs:           3,
		Hosts:          8,
		InFlight:       4,
		PhaseBudget:    3 * time.Minute,
		RestartBudget:  time.Minute,
		RequestTimeout: 15 * time.Second,
		ConnWindow:     time.Second,
		ConnWindows:    5,
		ConnWarmup:     time.Second,
		Samples:        1000,
		SampleBudget:   10 * time.Second,
		WriteDuration:  60 * time.Second,
		WriteLeases:    writeLeases,
		NamePrefix:     fmt.Sprintf("dpfb%d", os.Getpid()%100000),
		Logf:           func(string, ...any) {},
	}
}

// Quick returns c reduced to the CI short form: N = 100, one run, short
// measurements.
func Quick(c Config) Config {
	c.Sizes = []int{100}
	c.Runs = 1
	c.PhaseBudget = 60 * time.Second
	c.RestartBudget = 30 * time.Second
	c.RequestTimeout = 5 * time.Second
	c.ConnWindow = time.Second
	c.ConnWindows = 1
	c.ConnWarmup = 250 * time.Millisecond
	c.Samples = 20
	c.SampleBudget = 2 * time.Second
	c.WriteDuration = 7 * time.Second
	c.WriteLeases = 200
	return c
}

// Measurement is one raw figure of one run.
type Measurement struct {
	Target Target  `json:"target"`
	Proto  Proto   `json:"proto,omitempty"`
	N      int     `json:"n"`
	Run    int     `json:"run"`
	Metric string  `json:"metric"`
	Value  float64 `json:"value"`
	Arch   string  `json:"arch,omitempty"`
	Note   string  `json:"note,omitempty"`
}

// Metric names.
const (
	MFillRate    = "fill_rate"     // requests/s, cumulative from 0 to N
	MFillEndRate = "fill_end_rate" // requests/s of the last step up to N
	MFillP50     = "fill_p50_ms"
	MFillP99     = "fill_p99_ms"
	MFillReached = "fill_reached" // mappings made (N unless the budget ran out or requests failed)
	// One more map and one delete at N: sequential single requests.
	MMapOneP50  = "map_one_p50_ms"
	MMapOneP99  = "map_one_p99_ms"
	MDelOneP50  = "delete_one_p50_ms"
	MDelOneP99  = "delete_one_p99_ms"
	MOneSamples = "one_samples" // map+delete pairs behind the four above
	// dpfd only: the disk's own write+fdatasync, timed right after the
	// one-more samples at N, as dpfd's journal wrote during them (as
	// many map-sized and delete-sized writes, at their pace; see
	// syncBeside), in the directory of dpfd's database; the figures are
	// the map-sized writes' (MSyncBytes). MMapOverSync is MMapOneP99
	// minus MSyncP99 of the same run.
	MSyncBytes   = "sync_probe_bytes"
	MSyncP50     = "sync_p50_ms"
	MSyncP99     = "sync_p99_ms"
	MMapOverSync = "map_p99_over_sync_ms"
	// MConnRate is new inbound TCP connections/s, the median of the
	// windows of one run; N = 0: one pinhole only, before the fill.
	// MConnTwin is the same in the twin lab (one pinhole), in windows
	// taken in turn with MConnRate's; MConnRatio is MConnRate over
	// MConnTwin in percent, per run.
	MConnRate  = "conn_rate"
	MConnTwin  = "conn_twin_rate"
	MConnRatio = "conn_ratio_pct"
	MRSS       = "rss_mb"
	MCPU       = "cpu_s" // CPU time of the fill from 0 to N
	MRestart   = "restart_s"
	MRestored  = "restart_restored" // rules back at the end of the restart wait
	// MDevicePerH is what reached the block device of the lease
	// database's own file system in the write pass (loopfs.go), per hour.
	MDevicePerH = "device_bytes_per_hour"
	MWritePerH  = "write_bytes_per_hour"
	MWCharPerH  = "wchar_per_hour"
	MBinary     = "binary_bytes"
)

// Results is everything a Run measured.
type Results struct {
	Config       Config        `json:"-"`
	Started      time.Time     `json:"started"`
	Elapsed      time.Duration `json:"elapsed_ns"`
	Measurements []Measurement `json:"measurements"`
	DiskSync     []DiskSync    `json:"disk_sync,omitempty"`
	// Commands is how each target was run (its first fill pass).
	Commands []DaemonCommand `json:"commands,omitempty"`
	Errors   []string        `json:"errors,omitempty"`
}

func (r *Results) add(m Measurement) { r.Measurements = append(r.Measurements, m) }

// DaemonCommand is how the harness ran one target: the command line, the
// configuration file it names, and the firewall set-up the harness made
// for it beforehand.
type DaemonCommand struct {
	Target Target   `json:"target"`
	Argv   []string `json:"argv"`
	Config string   `json:"config"`
	Setup  string   `json:"setup,omitempty"`
}

// noteCommand records how d was run, once per target.
func (r *Results) noteCommand(d *daemon) {
	for _, c := range r.Commands {
		if c.Target == d.target {
			return
		}
	}
	r.Commands = append(r.Commands, DaemonCommand{Target: d.target, Argv: d.argv, Config: d.conf, Setup: d.setupText()})
}

// Run runs every measurement of c. Failures of one target or phase are
// recorded in Results.Errors and the rest goes on; the error return is for
// set-up failures that stop everything or a cancelled ctx.
func Run(ctx context.Context, c Config) (*Results, error) {
	res := &Results{Config: c, Started: time.Now()}
	if c.Logf == nil {
		c.Logf = func(string, ...any) {}
	}
	if err := os.MkdirAll(c.WorkDir, 0o755); err != nil {
		return nil, fmt.Errorf("making work directory: %w", err)
	}
	bins := map[Target]string{}
	for _, t := range c.Targets {
		if t.IsDpfd() {
			bins[t] = c.DpfdBin
			continue
		}
		p, err := EnsureMiniupnpd(t, c.CacheDir)
		if err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", t, err))
			continue
		}
		bins[t] = p
	}
	seq := 0
	for run := 1; run <= c.Runs; run++ {
		if ds, err := measureDiskSync(c.WorkDir, run); err != nil {
			res.Errors = append(res.Errors, fmt.Sprintf("run %d disk sync: %v", run, err))
		} else {
			res.DiskSync = append(res.DiskSync, ds)
			c.Logf("run %d: disk: 4 KiB write + fdatasync p50 %.2f ms, p99 %.2f ms", run, ms(ds.P50), ms(ds.P99))
		}
		for _, t := range c.Targets {
			if bins[t] == "" {
				continue
			}
			for _, p := range []Proto{NATPMP, PCP} {
				if err := ctx.Err(); err != nil {
					return res, err
				}
				seq++
				c.Logf("run %d: %s %s", run, t, p)
				if err := fillPass(ctx, c, res, t, bins[t], p, run, seq); err != nil {
					res.Errors = append(res.Errors, fmt.Sprintf("run %d %s %s: %v", run, t, p, err))
					c.Logf("  error: %v", err)
				}
			}
			seq++
			c.Logf("run %d: %s renewal writes", run, t)
			if err := writePass(ctx, c, res, t, bins[t], run, seq); err != nil {
				res.Errors = append(res.Errors, fmt.Sprintf("run %d %s writes: %v", run, t, err))
				c.Logf("  error: %v", err)
			}
		}
	}
	if err := binarySizes(c, res); err != nil {
		res.Errors = append(res.Errors, fmt.Sprintf("binary sizes: %v", err))
	}
	res.Elapsed = time.Since(res.Started)
	return res, nil
}

// env is one lab with one daemon in it.
type env struct {
	lab *lab.Lab
	d   *daemon
}

// newEnv builds a lab named after c.NamePrefix and name and starts a daemon
// of target t in it, its files in a work directory named after name.
func newEnv(c Config, t Target, bin string, name string, checkpoint time.Duration) (*env, error) {
	l, err := lab.New(fmt.Sprintf("%s-%s", c.NamePrefix, name), c.Hosts)
	if err != nil {
		return nil, fmt.Errorf("building lab: %w", err)
	}
	dir := filepath.Join(c.WorkDir, fmt.Sprintf("%s-%s", name, t))
	os.RemoveAll(dir)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.Close()
		return nil, err
	}
	dbDir := dir
	if c.dbDir != "" {
		dbDir = c.dbDir
	}
	e := &env{lab: l, d: &daemon{target: t, bin: bin, lab: l, dir: dir, dbDir: dbDir, checkpoint: checkpoint}}
	if !t.IsDpfd() {
		if err := startSTUN(l, dir); err != nil {
			e.close()
			return nil, err
		}
	}
	if err := e.d.setup(); err != nil {
		e.close()
		return nil, err
	}
	if err := e.d.start(startTimeout); err != nil {
		e.close()
		return nil, err
	}
	return e, nil
}

func (e *env) close() {
	e.d.close()
	if e.d.target.IsDpfd() {
		e.d.clearRules()
	}
	e.lab.Close()
}

// startSTUN runs coturn as an RFC 5780 STUN server on both internet
// addresses, so miniupnpd learns that its reserved-range WAN address is
// public and unfiltered.
func startSTUN(l *lab.Lab, dir string) error {
	logf, err := os.Create(filepath.Join(dir, "turnserver.log"))
	if err != nil {
		return err
	}
	cmd := exec.Command("turnserver", "-n", "--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
		"-L", lab.Inet.String(), "-L", lab.Inet2.String(), "--alt-listening-port", "3479",
		"--pidfile", filepath.Join(dir, "turnserver.pid"), "--db", filepath.Join(dir, "turndb"),
		"--log-file=stdout", "--simple-log")
	cmd.Stdout, cmd.Stderr = logf, logf
	err = l.Start(l.Inet, cmd)
	logf.Close()
	if err != nil {
		return fmt.Errorf("starting turnserver: %w", err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		out, _ := l.Output(5*time.Second, l.Inet, "ss", "-Hlnu", "sport", "= :3479")
		if strings.Contains(out, lab.Inet2.String()) {
			return nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	return errors.New("turnserver did not come up")
}

// Ports used by the workload: the inbound connection server, the fill
// (fillBase+k for mapping k) and the one-more samples.
const (
	connPort   = 9000
	fillBase   = 10000
	sampleBase = 40000
	// fillLifetime outlasts any phase of the benchmark.
	fillLifetime = 7200
)

// fillPass runs one protocol's fill up through every size on a fresh daemon;
// the NAT-PMP pass also measures connections, memory, CPU and restarts.
func fillPass(ctx context.Context, c Config, res *Results, t Target, bin string, p Proto, run, seq int) error {
	if waited, err := waitQuietMachine(); err != nil {
		return err
	} else if waited >= machineQuietLimit {
		c.Logf("  the machine was still busy after %v; going on", waited)
	}
	e, err := newEnv(c, t, bin, strconv.Itoa(seq), 300*time.Second)
	if err != nil {
		return err
	}
	defer e.close()
	res.noteCommand(e.d)
	gen, err := NewGenerator(e.lab, c.Hosts, c.InFlight, p, c.RequestTimeout)
	if err != nil {
		return err
	}
	defer gen.Close()
	m := func(n int, metric string, v float64, note string) {
		res.add(Measurement{Target: t, Proto: p, N: n, Run: run, Metric: metric, Value: v, Note: note})
	}
	general := p == NATPMP // connections, memory, restart: once per run
	connOp := Op{Host: 0, Port: connPort, Lifetime: fillLifetime}
	all := []Op{connOp}
	ext := map[Op]uint16{}
	_, cext, err := gen.Do(ctx, 0, connOp)
	if err != nil {
		return fmt.Errorf("mapping the connection port: %w", err)
	}
	ext[connOp] = cext
	var cf *connFixture
	if general {
		if cf, err = newConnFixture(ctx, c, t, bin, seq, e, cext); err != nil {
			return err
		}
		defer cf.close()
		if err := cf.figure(c, res, t, 0, run); err != nil {
			return err
		}
	}
	var (
		lats    []time.Duration
		elapsed time.Duration
		cpu     float64
		prev    int
	)
	for _, n := range c.Sizes {
		var ops []Op
		for k := prev; k < n; k++ {
			ops = append(ops, Op{Host: k % c.Hosts, Port: uint16(fillBase + k), Lifetime: fillLifetime})
		}
		before, _ := e.d.stats()
		pctx, cancel := context.WithTimeout(ctx, c.PhaseBudget)
		r := gen.Run(pctx, ops)
		cancel()
		after, _ := e.d.stats()
		cpu += after.CPU - before.CPU
		lats = append(lats, r.Latencies...)
		elapsed += r.Elapsed
		all = append(all, ops...)
		for op, x := range r.Ext {
			ext[op] = x
		}
		reached := prev + r.Done
		note := ""
		switch {
		case reached < n && (r.Truncated || r.Elapsed >= c.PhaseBudget):
			note = fmt.Sprintf("reached %d of %d: the step's budget of %v ran out (%d failed, first: %v)", reached, n, c.PhaseBudget, r.Failed, r.FirstErr)
		case reached < n:
			note = fmt.Sprintf("reached %d of %d in %v: %d requests failed (first: %v)", reached, n, r.Elapsed.Round(time.Second), r.Failed, r.FirstErr)
		}
		m(n, MFillReached, float64(reached), note)
		m(n, MFillRate, float64(len(lats))/elapsed.Seconds(), note)
		m(n, MFillEndRate, float64(r.Done)/r.Elapsed.Seconds(), note)
		m(n, MFillP50, ms(Percentile(lats, 50)), note)
		m(n, MFillP99, ms(Percentile(lats, 99)), note)
		c.Logf("  N=%d: %d mapped, %.0f req/s, p50 %.2f ms, p99 %.2f ms %s", n, reached, float64(len(lats))/elapsed.Seconds(),
			ms(Percentile(lats, 50)), ms(Percentile(lats, 99)), note)
		// A daemon that stopped short of n (its budget ran out) still
		// gets its single requests timed where it stopped, noted as
		// such: its latency grows with what it holds, so that favours
		// it.
		oneNote := ""
		if reached < n {
			// The requests still queued when the budget ran out
			// (and their retransmissions) are the daemon's to
			// answer first: the samples start when it is done.
			waited, err := waitQuietDaemon(e.d, backlogLimit)
			if err != nil {
				return err
			}
			oneNote = fmt.Sprintf("at %d mappings, where the fill stopped, after %v for the daemon to finish the requests in flight", reached, waited.Round(time.Second))
		}
		oneStart := time.Now()
		mapLat, delLat, err := oneMore(ctx, gen, c.Samples, c.SampleBudget)
		oneTook := time.Since(oneStart)
		if err != nil && reached < n {
			return nil // requests fail: larger N are out of reach
		}
		if err != nil {
			return fmt.Errorf("one more map at N=%d: %w", n, err)
		}
		m(n, MMapOneP50, ms(Percentile(mapLat, 50)), oneNote)
		m(n, MMapOneP99, ms(Percentile(mapLat, 99)), oneNote)
		m(n, MDelOneP50, ms(Percentile(delLat, 50)), oneNote)
		m(n, MDelOneP99, ms(Percentile(delLat, 99)), oneNote)
		m(n, MOneSamples, float64(len(mapLat)), oneNote)
		if t.IsDpfd() {
			syncP99, err := syncBeside(c, e.d, len(mapLat), oneTook, func(metric string, v float64) { m(n, metric, v, oneNote) })
			if err != nil {
				return fmt.Errorf("disk probe at N=%d: %w", n, err)
			}
			m(n, MMapOverSync, ms(Percentile(mapLat, 99))-syncP99, oneNote)
		}
		if reached < n {
			c.Logf("  N=%d (%s) one more: %d samples, map p50 %.2f ms", n, oneNote, len(mapLat), ms(Percentile(mapLat, 50)))
			return nil // the budget ran out or requests failed: larger N are out of reach
		}
		prev = n
		c.Logf("  N=%d one more: %d samples, map p50 %.2f ms p99 %.2f ms, delete p50 %.2f ms p99 %.2f ms", n, len(mapLat),
			ms(Percentile(mapLat, 50)), ms(Percentile(mapLat, 99)), ms(Percentile(delLat, 50)), ms(Percentile(delLat, 99)))
		if !general {
			continue
		}
		if err := cf.figure(c, res, t, n, run); err != nil {
			return err
		}
		st, err := e.d.stats()
		if err != nil {
			return err
		}
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MRSS, Value: float64(st.RSS) / (1 << 20)})
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MCPU, Value: cpu})
		if err := restart(ctx, c, res, e, gen, t, n, run, all, ext); err != nil {
			return err
		}
	}
	return nil
}

// backlogLimit bounds the wait for a daemon whose fill step ran out of
// budget to answer what was still in flight (32 requests and their
// retransmissions, each of which may take a slow daemon a second).
const backlogLimit = time.Minute

// minSamples is the fewest one-more samples taken whatever the budget, so
// that a slow daemon still gets a median.
const minSamples = 5

// oneMore maps and deletes one extra port from LAN host 0, one request at a
// time, up to samples times: it starts no new pair once budget has passed
// and minSamples pairs are done.
func oneMore(ctx context.Context, gen *Generator, samples int, budget time.Duration) (mapLat, delLat []time.Duration, err error) {
	start := time.Now()
	for j := range samples {
		if j >= minSamples && time.Since(start) >= budget {
			break
		}
		op := Op{Host: 0, Port: uint16(sampleBase + j), Lifetime: fillLifetime}
		lat, _, err := gen.Do(ctx, 0, op)
		if err != nil {
			return nil, nil, err
		}
		mapLat = append(mapLat, lat)
		op.Lifetime = 0
		lat, _, err = gen.Do(ctx, 0, op)
		if err != nil {
			return nil, nil, fmt.Errorf("delete: %w", err)
		}
		delLat = append(delLat, lat)
	}
	return mapLat, delLat, nil
}

// syncBeside times the disk's own writes right after dpfd's one-more
// samples, as dpfd's journal made them: pairs pairs of a write of the size
// of dpfd's record for one of those maps and one of the size of its record
// for a delete, each followed by fdatasync, at the pace of the samples (the
// pairs spread over took), in the directory of dpfd's database; the sizes
// are read from dpfd's journal. The figures, through m, are those of the
// map-sized writes; their p99 in ms is returned.
func syncBeside(c Config, d *daemon, pairs int, took time.Duration, m func(metric string, v float64)) (float64, error) {
	puts, dels, err := store.JournalRecordSizes(filepath.Join(d.dbDir, "leases.db-journal"))
	if err != nil {
		return 0, fmt.Errorf("reading dpfd's journal: %w", err)
	}
	if len(puts) == 0 || len(dels) == 0 {
		return 0, errors.New("dpfd's journal holds no single map's or delete's record")
	}
	size, delSize := puts[len(puts)-1], dels[len(dels)-1]
	every := took / time.Duration(max(pairs, 1))
	lat, err := syncProbe(d.dbDir, []int{size, delSize}, pairs, every, c.SampleBudget)
	if err != nil {
		return 0, err
	}
	p99 := ms(Percentile(lat, 99))
	m(MSyncBytes, float64(size))
	m(MSyncP50, ms(Percentile(lat, 50)))
	m(MSyncP99, p99)
	c.Logf("  disk beside it: %d pairs of %d+%d bytes + fdatasync each, every %v; the map's: p50 %.2f ms p99 %.2f ms", len(lat), size,
		delSize, every.Round(time.Microsecond), ms(Percentile(lat, 50)), p99)
	return p99, nil
}

// restart stops the daemon, removes its rules as a reboot would, starts it
// again and times until every mapped port is back in the ruleset. Mappings
// that did not come back are made again (untimed) so larger N can go on.
func restart(ctx context.Context, c Config, res *Results, e *env, gen *Generator, t Target, n, run int, all []Op, ext map[Op]uint16) error {
	ports := map[uint16]bool{}
	for _, op := range all {
		if x, ok := ext[op]; ok {
			ports[x] = true
		}
	}
	e.d.stop()
	if err := e.d.clearRules(); err != nil {
		return err
	}
	if got := e.d.present(ports); got > 0 {
		return fmt.Errorf("%d rules left after clearing", got)
	}
	// A daemon that reloads its mappings before it listens (miniupnpd)
	// gets the whole restart budget to come up.
	if err := e.d.start(c.RestartBudget); err != nil {
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MRestart, Value: -1,
			Note: fmt.Sprintf("not serving within %v of the restart", c.RestartBudget)})
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, c.RestartBudget)
	got := e.d.waitRules(rctx, ports)
	cancel()
	took := time.Since(e.d.started)
	note := ""
	if got < len(ports) {
		note = fmt.Sprintf("only %d of %d rules back after %v", got, len(ports), took.Round(time.Millisecond))
	}
	if !t.IsDpfd() {
		note = strings.TrimSpace("via lease_file; " + note)
	}
	res.add(Measurement{Target: t, N: n, Run: run, Metric: MRestored, Value: float64(got), Note: note})
	if got == len(ports) {
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MRestart, Value: took.Seconds(), Note: note})
	} else {
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MRestart, Value: -1, Note: note})
		pctx, cancel := context.WithTimeout(ctx, c.PhaseBudget)
		r := gen.Run(pctx, all)
		cancel()
		for op, x := range r.Ext {
			ext[op] = x
		}
	}
	c.Logf("  restart at N=%d: %d of %d rules back after %v", n, got, len(ports), took.Round(time.Millisecond))
	return nil
}

// The renewal workload of the issue (1,000 leases renewing every 60 s,
// lifetime 120 s, dpfd's checkpoint interval 300 s) runs with every time
// constant divided by writeScale; an hour then lasts 3600/writeScale s.
const (
	writeScale    = 10
	writeLeases   = 1000
	writeRenew    = 60 * time.Second / writeScale
	writeLifetime = 120 / writeScale
	// writeCheckpoint is dpfd's checkpoint_interval in the scaled run.
	writeCheckpoint = 300 * time.Second / writeScale
	// writeSettle is the pause between making the leases and the start of
	// the measurement, so that what making them costs is not counted:
	// dpfd writes its journal into the database 1 s after the last
	// record (src/store/journal.go). It is well inside writeLifetime.
	writeSettle = 2 * time.Second
)

// writePass measures the bytes a daemon writes while writeLeases leases
// renew, and extrapolates them to an hour of the unscaled workload.
func writePass(ctx context.Context, c Config, res *Results, t Target, bin string, run, seq int) error {
	// dpfd's database on a file system of its own (loopfs.go); without
	// one (no loop device) the pass still gives write_bytes and wchar.
	// miniupnpd's lease file is on tmpfs, as OpenWrt has it: nothing of
	// it reaches a disk.
	var lfs *loopFS
	var err error
	if t.IsDpfd() {
		lfs, err = newLoopFS(c.WorkDir)
	}
	if err != nil {
		c.Logf("  no file system of its own for the lease database, so no device count: %v", err)
		lfs = nil
	} else if lfs != nil {
		defer func() {
			if err := lfs.close(); err != nil {
				c.Logf("  %v", err)
			}
		}()
		c.dbDir = lfs.dir
	}
	e, err := newEnv(c, t, bin, strconv.Itoa(seq), writeCheckpoint)
	if err != nil {
		return err
	}
	defer e.close()
	res.noteCommand(e.d)
	gen, err := NewGenerator(e.lab, c.Hosts, c.InFlight, NATPMP, c.RequestTimeout)
	if err != nil {
		return err
	}
	defer gen.Close()
	leases := c.WriteLeases
	if leases <= 0 {
		leases = writeLeases
	}
	var ops []Op
	for k := range leases {
		ops = append(ops, Op{Host: k % c.Hosts, Port: uint16(fillBase + k), Lifetime: writeLifetime})
	}
	pctx, cancel := context.WithTimeout(ctx, c.PhaseBudget)
	r := gen.Run(pctx, ops)
	cancel()
	if r.Done == 0 {
		return fmt.Errorf("no lease made: %v", r.FirstErr)
	}
	time.Sleep(writeSettle)
	var devBefore uint64
	if lfs != nil {
		if devBefore, err = lfs.written(); err != nil {
			return err
		}
	}
	before, err := e.d.stats()
	if err != nil {
		return err
	}
	start := time.Now()
	rounds, late := 0, 0
	for time.Since(start) < c.WriteDuration && ctx.Err() == nil {
		next := start.Add(time.Duration(rounds+1) * writeRenew)
		if d := time.Until(next); d > 0 {
			time.Sleep(min(d, c.WriteDuration-time.Since(start)))
			if time.Since(start) >= c.WriteDuration {
				break
			}
		} else {
			late++
		}
		rctx, cancel := context.WithTimeout(ctx, c.WriteDuration)
		gen.Run(rctx, ops)
		cancel()
		rounds++
	}
	after, err := e.d.stats()
	if err != nil {
		return err
	}
	var devAfter uint64
	if lfs != nil {
		if devAfter, err = lfs.written(); err != nil {
			return err
		}
	}
	span := time.Since(start)
	perHour := func(b uint64) float64 {
		return float64(b) / span.Seconds() * 3600 / writeScale * writeLeases / float64(leases)
	}
	note := fmt.Sprintf("%d renewal rounds in %v at 1/%d time scale", rounds, span.Round(time.Second), writeScale)
	if leases != writeLeases {
		note += fmt.Sprintf(", %d leases scaled to %d", leases, writeLeases)
	}
	if r.Done < leases {
		note += fmt.Sprintf(", only %d of %d leases made at the start", r.Done, leases)
	}
	if late > 0 {
		note += fmt.Sprintf(", %d rounds late (renewals slower than %v)", late, writeRenew)
	}
	res.add(Measurement{Target: t, N: writeLeases, Run: run, Metric: MWritePerH, Value: perHour(after.WriteBytes - before.WriteBytes), Note: note})
	res.add(Measurement{Target: t, N: writeLeases, Run: run, Metric: MWCharPerH, Value: perHour(after.WChar - before.WChar), Note: note})
	switch {
	case lfs != nil:
		res.add(Measurement{Target: t, N: writeLeases, Run: run, Metric: MDevicePerH, Value: perHour(devAfter - devBefore), Note: note})
	case !t.IsDpfd():
		res.add(Measurement{Target: t, N: writeLeases, Run: run, Metric: MDevicePerH, Value: 0,
			Note: note + "; its lease file is on tmpfs (/var/run), as OpenWrt's upnpd configuration has it: nothing reaches a disk, and its mappings do not survive a reboot"})
	}
	c.Logf("  %s; device %d, write_bytes %d, wchar %d", note, devAfter-devBefore, after.WriteBytes-before.WriteBytes, after.WChar-before.WChar)
	return nil
}

// binarySizes records the size of dpfd for each OpenWrt architecture,
// building them first when c.OpenWrtBin has none.
func binarySizes(c Config, res *Results) error {
	dir := c.OpenWrtBin
	if c.BuildOpenWrt {
		dir = filepath.Join(c.WorkDir, "openwrt")
	}
	if dir == "" {
		return nil
	}
	matches, _ := filepath.Glob(filepath.Join(dir, "*", "dpfd"))
	if len(matches) == 0 {
		c.Logf("building dpfd for the OpenWrt targets in %s", dir)
		cmd := exec.Command("go", "run", "./openwrt/ipkbuild", "binaries", "-out", dir, "-ldflags", "-s -w")
		cmd.Dir = c.RepoDir
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("building OpenWrt binaries: %w: %s", err, tail(string(out), 1000))
		}
		matches, _ = filepath.Glob(filepath.Join(dir, "*", "dpfd"))
	}
	for _, p := range matches {
		fi, err := os.Stat(p)
		if err != nil {
			return err
		}
		res.add(Measurement{Target: "dpfd", Metric: MBinary, Value: float64(fi.Size()), Arch: filepath.Base(filepath.Dir(p)),
			Note: fi.ModTime().UTC().Format(time.RFC3339)})
	}
	return nil
}
