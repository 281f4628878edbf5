// Command dpfd is DPF's router daemon: it answers PCP and NAT-PMP requests
// from the LAN, opens pinholes in netfilter and keeps them in a lease store.
//
//	dpfd run [-c FILE] [--log-level LEVEL] [--syslog [--syslog-socket PATH]]
//	                              run in the foreground
//	dpfd status [-c FILE] [--json]
//	dpfd list [-c FILE] [--json]
//	dpfd delete [-c FILE] tcp|udp PORT | --client ADDR
//	dpfd reload [-c FILE]         re-read the configuration (exit 4: restart needed)
//	dpfd reconcile [-c FILE]      re-install every pinhole
//	dpfd check [-c FILE]          validate the configuration file
//	dpfd cleanup [-c FILE]        remove every rule dpfd added
//	dpfd rpcd [-c FILE] list | call METHOD   the rpcd plugin (rpcd.go)
//	dpfd genkey [-q] [NAME]       a new client key (genkey.go)
//	dpfd version
//
// Exit codes: 0 success, 1 failure, 2 usage or configuration error, 3 the
// daemon is not running, 4 (reload) options changed that need a restart, so
// the daemon applied none of the file.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/metrics"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/daemon"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/internal/syslog"
)

// Exit codes.
const (
	exitOK         = 0
	exitFailure    = 1
	exitUsage      = 2
	exitNotRunning = 3
	exitRestart    = 4
)

const defaultConfig = "/etc/config/dpf"

func main() {
	code := run(os.Args[1:], os.Stdout, os.Stderr)
	stopTrace()
	os.Exit(code)
}

// stopTrace ends the execution trace of a dpfdebug build (trace_debug.go).
var stopTrace = func() {}

const usage = `usage: dpfd COMMAND [options]

commands:
  run [-c FILE] [--log-level LEVEL] [--syslog [--syslog-socket PATH]]
                                      run the daemon in the foreground; it logs
                                      to stderr, or with --syslog to the system
                                      log (PATH, default /dev/log) at each
                                      line's own priority
  status [-c FILE] [--json]           show the daemon's state
  list [-c FILE] [--json]             list the leases
  delete [-c FILE] tcp|udp PORT       delete one lease
  delete [-c FILE] --client ADDR      delete every lease of a host
  reload [-c FILE]                    re-read the configuration file; exit 4 and
                                      "restart needed: OPTIONS" when options
                                      changed that need a restart (then nothing
                                      is applied)
  reconcile [-c FILE]                 re-install every pinhole
  check [-c FILE]                     validate the configuration file
  cleanup [-c FILE]                   remove every firewall rule dpfd added
  rpcd [-c FILE] list|call METHOD     the rpcd plugin behind ubus object "dpf"
  genkey [-q] [NAME]                  print a new client key and its config key section
  version                             print the version

-c FILE defaults to ` + defaultConfig + `; the other commands use it to find
the control socket of the daemon started with that file.
`

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	if cmd == "rpcd" { // own flags; must answer "list" without a configuration
		return runRPCD(args, os.Stdin, stdout, stderr)
	}
	if cmd == "genkey" { // needs no configuration (genkey.go)
		return runGenkey(args, genkeyRand, stdout, stderr)
	}
	fs := flag.NewFlagSet("dpfd "+cmd, flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", defaultConfig, "configuration file (UCI format)")
	jsonOut := fs.Bool("json", false, "print JSON")
	client := fs.String("client", "", "with delete: delete every lease of this host")
	logLevel := fs.String("log-level", "", "with run: debug, info, warn or error (overrides the file, also across reloads)")
	useSyslog := fs.Bool("syslog", false, "with run: log to the system log instead of stderr")
	syslogPath := fs.String("syslog-socket", syslog.DefaultPath, "with run --syslog: the system log's socket")
	if err := fs.Parse(reorder(args)); err != nil {
		return exitUsage
	}
	switch cmd {
	case "version", "--version", "-v":
		fmt.Fprintln(stdout, versionLine(daemon.Version))
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		fmt.Fprintln(stderr, "dpfd:", err)
		return exitUsage
	}
	switch cmd {
	case "run":
		lo := logOptions{level: *logLevel, syslog: *useSyslog, syslogPath: *syslogPath}
		return runDaemon(cfg, *cfgPath, lo, stderr)
	case "check":
		fmt.Fprintf(stdout, "%s: ok (%d rules)\n", *cfgPath, len(cfg.Rules))
		return exitOK
	case "cleanup":
		return cleanup(cfg, stdout, stderr)
	case "status":
		var st control.Status
		if code := call(cfg, control.MethodStatus, nil, &st, stderr); code != exitOK {
			return code
		}
		if *jsonOut {
			return printJSON(stdout, st)
		}
		printStatus(stdout, st)
		return exitOK
	case "list":
		var ls []control.Lease
		if code := call(cfg, control.MethodList, nil, &ls, stderr); code != exitOK {
			return code
		}
		if *jsonOut {
			if ls == nil {
				ls = []control.Lease{}
			}
			return printJSON(stdout, ls)
		}
		printLeases(stdout, ls)
		return exitOK
	case "delete":
		p := control.DeleteParams{Client: *client}
		if p.Client == "" {
			if fs.NArg() != 2 {
				fmt.Fprintln(stderr, "usage: dpfd delete tcp|udp PORT, or dpfd delete --client ADDR")
				return exitUsage
			}
			port, err := strconv.ParseUint(fs.Arg(1), 10, 16)
			if err != nil || port == 0 {
				fmt.Fprintf(stderr, "dpfd: port %q: want 1-65535\n", fs.Arg(1))
				return exitUsage
			}
			if _, err := firewall.ParseProto(fs.Arg(0)); err != nil {
				fmt.Fprintln(stderr, "dpfd:", err)
				return exitUsage
			}
			p.Proto, p.ExternalPort = fs.Arg(0), uint16(port)
		}
		var ls []control.Lease
		if code := call(cfg, control.MethodDelete, p, &ls, stderr); code != exitOK {
			return code
		}
		for _, l := range ls {
			fmt.Fprintf(stdout, "deleted %s/%d -> %s:%d\n", l.Proto, l.ExternalPort, l.InternalAddr, l.InternalPort)
		}
		if len(ls) == 0 {
			fmt.Fprintln(stdout, "no lease matched")
		}
		return exitOK
	case "reload":
		var res control.ReloadResult
		if code := call(cfg, control.MethodReload, nil, &res, stderr); code != exitOK {
			return code
		}
		if len(res.RestartNeeded) > 0 {
			fmt.Fprintln(stdout, "restart needed:", strings.Join(res.RestartNeeded, ", "))
			return exitRestart
		}
		fmt.Fprintln(stdout, "ok")
		return exitOK
	case "reconcile":
		if code := call(cfg, control.MethodReconcile, nil, nil, stderr); code != exitOK {
			return code
		}
		fmt.Fprintln(stdout, "ok")
		return exitOK
	}
	fmt.Fprintf(stderr, "dpfd: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// reorder moves flags after positional arguments to the front, so that
// "dpfd delete tcp 8080 -c FILE" works like "dpfd delete -c FILE tcp 8080".
func reorder(args []string) []string {
	var flags, pos []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if strings.HasPrefix(a, "-") && a != "-" {
			flags = append(flags, a)
			name := strings.TrimLeft(a, "-")
			if !strings.Contains(name, "=") && (name == "c" || name == "client" || name == "log-level" || name == "syslog-socket") && i+1 < len(args) {
				flags = append(flags, args[i+1])
				i++
			}
			continue
		}
		pos = append(pos, a)
	}
	return append(flags, pos...)
}

// logOptions are dpfd run's logging flags.
type logOptions struct {
	level      string // --log-level; empty: option log_level
	syslog     bool   // --syslog
	syslogPath string // --syslog-socket
}

// newLogger returns the daemon's logger and the level it filters at,
// which starts at lo.level or else at option log_level (cfgLevel). It
// writes to stderr, or with lo.syslog to the system log, one datagram per
// line with the line's own priority (facility daemon, ident dpfd), falling
// back to stderr while the system log cannot be reached.
func newLogger(lo logOptions, cfgLevel string, stderr io.Writer) (*slog.Logger, *slog.LevelVar, error) {
	level := lo.level
	if level == "" {
		level = cfgLevel
	}
	lv := new(slog.LevelVar)
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", level)
	}
	if !lo.syslog {
		return slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lv})), lv, nil
	}
	h := syslog.New(syslog.Options{Path: lo.syslogPath, Tag: "dpfd", Level: lv, Fallback: stderr})
	return slog.New(h), lv, nil
}

func runDaemon(cfg *config.Config, path string, lo logOptions, stderr io.Writer) int {
	log, level, err := newLogger(lo, cfg.LogLevel, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dpfd:", err)
		return exitUsage
	}
	if lo.level != "" {
		level = nil // fixed by the command line, also across reloads
	}
	if !cfg.Enabled {
		log.Info("disabled in configuration (option enabled '0'); removing rules and exiting")
		if fw, err := firewall.New(cfg.Backend, firewall.Config{WANInterface: cfg.WANInterface}); err == nil {
			fw.Cleanup()
			fw.Close()
		}
		return exitOK
	}
	d, err := daemon.New(cfg, daemon.Options{ConfigPath: path, Logger: log, Level: level})
	if err != nil {
		log.Error("cannot start", "err", err)
		return exitFailure
	}
	// Restoring the leases and installing their pinholes build the whole
	// table and ruleset once, with the runtime's default GOGC so that the
	// pinholes are back soonest; hand that garbage's pages back now rather
	// than leaving them to the scavenger, then collect more often.
	debug.FreeOSMemory()
	pace := tuneMemory(os.Getenv, log)
	pacer := gcPacer{cur: defaultGCPercent, set: debug.SetGCPercent}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	// The trimmer is owned here and stopped when the daemon stops.
	trimCtx, stopTrim := context.WithCancel(ctx)
	trimDone := make(chan struct{})
	defer func() { stopTrim(); <-trimDone }()
	go func() {
		defer close(trimDone)
		tick := time.NewTicker(trimPoll)
		defer tick.Stop()
		trimWhenIdle(trimCtx, tick.C, heapAllocated, func() {
			debug.FreeOSMemory()
			log.Debug("returned free memory to the system after a burst of requests")
		}, func() {
			if pace {
				pacer.tick(heapLive())
			}
		})
	}()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				// A reload that needs a restart logs the options itself.
				if _, err := d.Reload(); err != nil {
					log.Error("reload failed; keeping the old configuration", "err", err)
				}
			}
		}
	}()
	if err := d.Run(ctx); err != nil {
		log.Error("stopped", "err", err)
		return exitFailure
	}
	return exitOK
}

// defaultGCPercent is the daemon's GOGC when the environment sets none,
// until gcPercentFor adjusts it to the live heap. The heap dpfd keeps is
// small (about 5 MB at 10,000 leases), so collecting when the heap has
// grown by a quarter, not by Go's default 100%, costs little CPU and keeps
// the resident heap near what is live: a router's memory budget is counted
// in resident megabytes.
const defaultGCPercent = 25

// The collector's headroom. A request allocates about 20 kB (most of it
// in the netlink libraries), so at GOGC 25 a daemon with a 2 MB heap
// collects every 25 requests; each collection stops the world twice and
// takes a CPU of two for its marking, and the requests it overlaps make
// the latency tail (seen in execution traces). Allowing gcHeadroom of
// garbage whatever the heap, within [defaultGCPercent, maxGCPercent],
// collects 2 to 4 times less often while the heap is small and changes
// nothing at 10,000 leases, where the heap is what the memory budget is
// about.
const (
	gcHeadroom   = 2 << 20
	maxGCPercent = 100
)

// gcPercentFor returns the GOGC for a live heap of live bytes: enough for
// gcHeadroom of garbage, within [defaultGCPercent, maxGCPercent], in steps
// of 5 so that small changes of the heap do not change it.
func gcPercentFor(live uint64) int {
	if live == 0 {
		return maxGCPercent
	}
	p := int(gcHeadroom * 100 / live)
	p -= p % 5
	return min(max(p, defaultGCPercent), maxGCPercent)
}

// tuneMemory sets the garbage collector's defaults for the serving daemon
// unless the user chose them, and reports whether it did (and so whether
// gcPercentFor may adjust GOGC): GOGC in the environment (which the
// runtime has already applied) overrides defaultGCPercent, and
// GOMEMLIMIT, which the runtime also reads itself, is left alone: dpfd
// sets no memory limit.
func tuneMemory(getenv func(string) string, log *slog.Logger) bool {
	if getenv("GOGC") != "" {
		return false
	}
	debug.SetGCPercent(defaultGCPercent)
	log.Debug("garbage collector tuned", "gogc", defaultGCPercent)
	return true
}

// gcPacer sets GOGC from the live heap (gcPercentFor) when it changes.
type gcPacer struct {
	cur int
	set func(int) int // debug.SetGCPercent
}

// tick adjusts GOGC to a live heap of live bytes; 0 (not measured yet)
// changes nothing.
func (p *gcPacer) tick(live uint64) {
	if live == 0 {
		return
	}
	if want := gcPercentFor(live); want != p.cur {
		p.set(want)
		p.cur = want
	}
}

// heapLive returns the live heap as the last collection measured it, or
// 0 where the runtime does not say.
func heapLive() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// Returning memory after a burst. The runtime's background scavenger gives
// free heap pages back to the system only slowly, so after a burst of
// requests (thousands of leases made or restored) the daemon would stay at
// its peak size for minutes. trimWhenIdle returns them once the burst is
// over: one forced collection per burst, a few milliseconds of CPU at
// 10,000 leases.
const (
	// trimPoll is how often the allocation counter is read (a cheap
	// runtime/metrics read, no stop-the-world).
	trimPoll = time.Second
	// trimBurst is how much allocation since the last trim makes a burst
	// worth trimming after: about 400 NAT-PMP or PCP requests.
	trimBurst = 4 << 20
	// trimQuiet is the most a poll interval may allocate and still count
	// as idle: the expiry loop, watchers and status calls of an idle
	// daemon allocate far less.
	trimQuiet = 256 << 10
)

// trimWhenIdle calls free once each time a burst of at least trimBurst
// allocated bytes is followed by a tick interval that allocated less than
// trimQuiet, and every tick calls each, until ctx ends. allocated returns
// the bytes allocated since the process started (heapAllocated).
func trimWhenIdle(ctx context.Context, tick <-chan time.Time, allocated func() uint64, free func(), each func()) {
	tr := newTrimmer(allocated())
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
		}
		each()
		if tr.tick(allocated()) {
			free()
			tr.trimmed(allocated()) // a collection may allocate a little itself
		}
	}
}

// trimmer is trimWhenIdle's decision, apart from its clock and runtime.
type trimmer struct {
	last uint64 // allocation counter at the last tick
	base uint64 // allocation counter after the last trim
}

// newTrimmer starts with the allocation counter at now.
func newTrimmer(now uint64) trimmer { return trimmer{last: now, base: now} }

// tick records the allocation counter at a tick and reports whether to
// trim now: the interval since the last tick was quiet and a burst was
// allocated since the last trim.
func (t *trimmer) tick(now uint64) bool {
	quiet := now-t.last < trimQuiet
	t.last = now
	return quiet && now-t.base >= trimBurst
}

// trimmed records the allocation counter right after a trim.
func (t *trimmer) trimmed(now uint64) { t.last, t.base = now, now }

// heapAllocated returns the bytes allocated on the heap since the process
// started.
func heapAllocated() uint64 {
	s := []metrics.Sample{{Name: "/gc/heap/allocs:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0 // not supported by this runtime: never trims
	}
	return s[0].Value.Uint64()
}

func cleanup(cfg *config.Config, stdout, stderr io.Writer) int {
	if err := control.Call(cfg.Socket, control.MethodStatus, nil, nil); err == nil {
		fmt.Fprintln(stderr, "dpfd: warning: dpfd is running; it will re-install its pinholes at the next reconcile. Stop it first.")
	}
	fw, err := firewall.New(cfg.Backend, firewall.Config{WANInterface: cfg.WANInterface})
	if err != nil {
		fmt.Fprintln(stderr, "dpfd: cleanup:", err)
		return exitFailure
	}
	defer fw.Close()
	if err := fw.Cleanup(); err != nil {
		fmt.Fprintln(stderr, "dpfd: cleanup:", err)
		return exitFailure
	}
	fmt.Fprintf(stdout, "removed dpfd's %s rules\n", fw.Name())
	return exitOK
}

func call(cfg *config.Config, method string, params, out any, stderr io.Writer) int {
	err := control.Call(cfg.Socket, method, params, out)
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, control.ErrNotRunning):
		fmt.Fprintln(stderr, "dpfd:", err)
		return exitNotRunning
	}
	fmt.Fprintln(stderr, "dpfd:", err)
	return exitFailure
}

func printJSON(w io.Writer, v any) int {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

func printStatus(w io.Writer, st control.Status) {
	ext := st.ExternalAddress
	if ext == "" {
		ext = "(none: WAN down?)"
	}
	fmt.Fprintf(w, "dpfd %s, up %s\n", st.Version, (time.Duration(st.Uptime) * time.Second).String())
	fmt.Fprintf(w, "external address: %s on %s\n", ext, st.WANInterface)
	fmt.Fprintf(w, "LAN: %s (%s), listening on %s\n", strings.Join(st.LANInterfaces, " "),
		strings.Join(st.LANSubnets, " "), strings.Join(st.Listening, " "))
	fmt.Fprintf(w, "firewall backend: %s\n", st.Backend)
	fmt.Fprintf(w, "leases: %d of %d, epoch %d\n", st.Leases, st.MaxLeases, st.Epoch)
	c := st.Counters
	fmt.Fprintf(w, "mappings: %d created, %d renewed, %d deleted, %d expired, %d refused\n",
		c[control.CounterCreated], c[control.CounterRenewed], c[control.CounterDeleted], c[control.CounterExpired], c[control.CounterRefused])
	fmt.Fprintf(w, "requests: %d (%d PCP, %d NAT-PMP), %d answered (%d with an error), %d dropped, %d rate-limited\n",
		c[control.CounterRequests], c[control.CounterPCP], c[control.CounterNATPMP], c[control.CounterAnswered],
		c[control.CounterErrorResponses], c[control.CounterDropped], c[control.CounterRateLimited])
	fmt.Fprintf(w, "failures: %d firewall, %d database; %d firewall repairs\n",
		c[control.CounterFirewallFailures], c[control.CounterStoreFailures], c[control.CounterFirewallRepairs])
}

func printLeases(w io.Writer, ls []control.Lease) {
	if len(ls) == 0 {
		fmt.Fprintln(w, "no leases")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tEXTERNAL\tINTERNAL\tCLIENT\tVIA\tEXPIRES IN\tDESCRIPTION")
	for _, l := range ls {
		desc := l.Description
		if len(l.Filters) > 0 {
			desc = strings.TrimSpace(desc + " [from " + strings.Join(l.Filters, ", ") + "]")
		}
		via := l.Origin
		if l.Auth != "" {
			via += " key " + l.Auth
		}
		fmt.Fprintf(tw, "%s\t%d\t%s:%d\t%s\t%s\t%s\t%s\n", l.Proto, l.ExternalPort, l.InternalAddr, l.InternalPort,
			l.Client, via, (time.Duration(l.ExpiresIn) * time.Second).String(), desc)
	}
	tw.Flush()
}
