// Package daemon wires dpfd together: configuration, lease store, firewall
// backend, lease manager, protocol server and control socket, and runs them
// until told to stop.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/internal/ifaddr"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/policy"
	"github.com/dpf-router/dpf/src/server"
	"github.com/dpf-router/dpf/src/store"
)

// Version is set at build time (-ldflags "-X .../daemon.Version=...").
var Version = "dev"

// watchInterval is how often the WAN address and LAN subnets are read again.
const watchInterval = 5 * time.Second

// Daemon is a running dpfd.
type Daemon struct {
	cfgPath string
	log     *slog.Logger
	clk     clock.Clock
	started time.Time

	fw    firewall.Backend
	store *store.Store
	m     *lease.Manager
	srv   *server.Server
	ctl   *control.Listener
	bus   busService // bus.go: nil when option dbus is off
	auth  authSaver  // auth.go: the replay state last stored
	// reserved: the external ports never handed out (reserved_ports and
	// the router's own listening sockets).
	reserved *reservedPorts

	extAddr   atomic.Pointer[netip.Addr]
	wan       wanState  // wan.go: the last external address, for epoch resets
	healStats healStats // heal.go: firewall repairs

	// level is the logger's level, which Reload sets from option
	// log_level; nil when the command line fixed it.
	level *slog.LevelVar
	// reloadMu serialises Reload.
	reloadMu sync.Mutex

	mu  sync.Mutex
	cfg *config.Config // guarded by mu
	lan []netip.Prefix // guarded by mu
}

// Options are what the command line adds to the configuration file.
type Options struct {
	ConfigPath string
	Logger     *slog.Logger
	// Level, when not nil, is the level Logger filters at: Reload sets it
	// from option log_level. Nil when the command line fixed the level
	// (dpfd run --log-level), which then holds across reloads.
	Level *slog.LevelVar
	// ExtraListen adds listening addresses (tests).
	ExtraListen []netip.AddrPort
}

// New opens the store and the firewall, restores the leases and re-installs
// their pinholes. It does not yet answer requests: call Run.
func New(cfg *config.Config, opts Options) (*Daemon, error) {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	d := &Daemon{cfgPath: opts.ConfigPath, log: log, level: opts.Level, clk: clock.Real{}, cfg: cfg}
	d.started = d.clk.Now()

	fw, err := firewall.New(cfg.Backend, firewall.Config{WANInterface: cfg.WANInterface, Logger: log.With("component", "firewall")})
	if err != nil {
		return nil, fmt.Errorf("firewall backend %q: %w", cfg.Backend, err)
	}
	d.fw = fw
	if err := fw.Init(); err != nil {
		fw.Close()
		return nil, fmt.Errorf("initialising %s: %w", fw.Name(), err)
	}
	st, err := store.Open(cfg.DB)
	if err != nil {
		fw.Close()
		return nil, err
	}
	if err := st.JournalProblem(); err != nil {
		log.Warn("lease database", "db", cfg.DB, "err", err)
	}
	st.SetErrorHandler(func(err error) { log.Warn("lease database", "db", cfg.DB, "err", err) })
	d.store = st

	d.lan = lanPrefixes(cfg.LANInterfaces)
	d.reserved = newReservedPorts(cfg.ReservedPorts, cfg.WANInterface, d.ExternalAddr, log.With("component", "reserved"))
	d.bus = newBus(cfg, busBackend{d}, log)
	var onChange func(lease.Event)
	if d.bus != nil {
		onChange = d.leaseChanged
	}
	d.m = lease.New(lease.Config{
		MinLifetime:        cfg.MinLifetime,
		MaxLifetime:        cfg.MaxLifetime,
		MaxPerHost:         cfg.MaxPerHost,
		MaxLeases:          cfg.MaxLeases,
		CheckpointInterval: checkpointInterval(cfg),
		Policy:             d.policy(),
		Clock:              d.clk,
		Logger:             log.With("component", "lease"),
		Firewall:           fw,
		Store:              st,
		OnChange:           onChange,
		Reserved:           d.reserved.reserved,
	})

	stored, bad, err := st.Load()
	if err != nil {
		d.closeResources()
		return nil, fmt.Errorf("loading leases: %w", err)
	}
	for _, b := range bad {
		log.Warn("skipping unreadable stored lease", "record", b)
	}
	restored, dropped, err := d.m.Restore(stored)
	if err != nil {
		log.Warn("restoring leases", "err", err)
	}
	syncStart := time.Now()
	if err := d.m.SyncFirewall(); err != nil {
		d.closeResources()
		return nil, fmt.Errorf("installing restored pinholes: %w", err)
	}
	log.Info("leases restored", "restored", restored, "expired", dropped, "backend", fw.Name(),
		"sync_time", time.Since(syncStart).String())

	// The external address the saved state was granted on: a new one
	// (changed while dpfd was stopped) resets the epoch below, and one
	// that appears later is compared with it (wan.go).
	savedExt, err := st.LoadExternal()
	if err != nil {
		log.Warn("reading the saved external address", "err", err)
	}
	if restored > 0 {
		d.wan.last = savedExt
	}
	d.updateExternal()
	epoch := d.restoredEpoch(restored > 0)
	if ext := d.ExternalAddr(); ext.IsValid() && ext != savedExt {
		if epoch != 0 && savedExt.IsValid() {
			log.Warn("external address changed while dpfd was stopped: epoch reset to 0",
				"addr", ext.String(), "previous", savedExt.String())
			epoch = 0
		}
		if err := st.SaveExternal(ext); err != nil {
			log.Warn("saving the external address", "err", err)
		}
	}
	authMode, authKeys := serverAuth(cfg)
	authSeqs, err := loadAuthSeqs(st, authMode, log)
	if err != nil {
		d.closeResources()
		return nil, err
	}
	d.srv = server.New(server.Config{
		LANInterfaces: cfg.LANInterfaces,
		ExtraListen:   opts.ExtraListen,
		Manager:       d.m,
		ExternalAddr:  d.ExternalAddr,
		RateLimit:     cfg.RateLimit,
		RateBurst:     cfg.RateBurst,
		EpochBase:     epoch,
		AuthMode:      authMode,
		AuthKeys:      authKeys,
		AuthSeqs:      authSeqs,
		Clock:         d.clk,
		Logger:        log.With("component", "server"),
	})
	return d, nil
}

func checkpointInterval(cfg *config.Config) time.Duration {
	if cfg.CheckpointInterval <= 0 {
		// "0 writes every renewal": a one-second checkpoint is as good
		// and batches bursts.
		return time.Second
	}
	return cfg.CheckpointInterval
}

// restoredEpoch continues the PCP epoch when lease state was restored
// (RFC 6887 section 8.5): the saved value plus the time since it was saved
// when the wall clock looks sane, else plus the longest the saved value can
// lag (two checkpoint intervals and one watch tick: see watch), so that it
// never goes back. The wall clock is not sane when it reads before the save (a router
// without a real-time clock booting at its build date) or more than a day
// after it (set far forwards); a step while dpfd runs is followed by a save
// (see watch), so the saved time is of the clock as it was set. Without
// restored state the epoch starts again at 0, which tells clients to
// re-create their mappings.
func (d *Daemon) restoredEpoch(restored bool) uint32 {
	if !restored {
		return 0
	}
	e, at, ok, err := d.store.LoadEpoch()
	if err != nil || !ok {
		return 0
	}
	down := time.Since(at)
	if down < 0 || down > 24*time.Hour {
		down = 2*checkpointInterval(d.cfg) + watchInterval
	}
	return e + uint32(down/time.Second)
}

// policy builds the policy from the configured rules and the LAN subnets.
// Callers hold d.mu (or own d exclusively, as New does).
func (d *Daemon) policy() *policy.Policy {
	return &policy.Policy{Rules: d.cfg.Rules, LANPrefixes: d.lan}
}

// ExternalAddr returns the current external address (invalid if unknown).
func (d *Daemon) ExternalAddr() netip.Addr {
	if p := d.extAddr.Load(); p != nil {
		return *p
	}
	return netip.Addr{}
}

func (d *Daemon) updateExternal() {
	// One update at a time (wan.go), so that the address stored is the
	// one read last and each change is acted on once.
	d.wan.mu.Lock()
	defer d.wan.mu.Unlock()
	d.mu.Lock()
	cfg := d.cfg
	d.mu.Unlock()
	addr := cfg.ExternalAddress
	if !addr.IsValid() {
		addr = firstIPv4(cfg.WANInterface)
	}
	old := d.ExternalAddr()
	if addr != old {
		d.extAddr.Store(&addr)
		if d.bus != nil {
			d.bus.SetExternalAddress(addrString(addr))
		}
		if addr.IsValid() && old.IsValid() {
			d.log.Info("external address changed", "addr", addr.String(), "previous", old.String())
		} else if addr.IsValid() {
			d.log.Info("external address", "addr", addr.String())
		} else {
			d.log.Warn("no external address on WAN interface", "interface", cfg.WANInterface)
		}
	}
	d.externalChangedLocked(addr)
}

func firstIPv4(ifname string) netip.Addr {
	ps, err := ifaddr.IPv4(ifname)
	if err != nil || len(ps) == 0 {
		return netip.Addr{}
	}
	return ps[0].Addr()
}

// lanPrefixes returns the subnets of the LAN interfaces, sorted.
func lanPrefixes(ifnames []string) []netip.Prefix {
	var out []netip.Prefix
	for _, name := range ifnames {
		ps, _ := ifaddr.IPv4(name) // a missing interface has no subnet yet
		for _, p := range ps {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return slices.Compact(out)
}

// Run serves until ctx is done, then checkpoints and closes everything. The
// pinholes stay installed so that a restart does not cut connections;
// `dpfd cleanup` removes them.
func (d *Daemon) Run(ctx context.Context) error {
	d.mu.Lock()
	sockPath, busMode := d.cfg.Socket, d.cfg.DBus
	d.mu.Unlock()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if d.bus != nil && busMode == config.DBusOn {
		// option dbus '1': the D-Bus interface is required, so fail
		// now rather than run without it. Later losses are retried.
		if err := d.bus.Connect(ctx); err != nil {
			d.closeResources()
			return fmt.Errorf("D-Bus interface (option dbus '1'): %w", err)
		}
	}
	ctl, err := control.Listen(sockPath)
	if err != nil {
		if d.bus != nil {
			d.bus.Close() // before the store it may be using closes
		}
		d.closeResources()
		return err
	}
	d.ctl = ctl
	var wg sync.WaitGroup
	var serveErr error
	if d.bus != nil {
		wg.Add(1)
		go func() { defer wg.Done(); d.bus.Run(ctx) }()
	}
	wg.Add(6)
	go func() { defer wg.Done(); d.m.Run(ctx) }()
	go func() {
		defer wg.Done()
		if err := d.srv.Serve(ctx); err != nil {
			serveErr = err
			cancel()
		}
	}()
	go func() { defer wg.Done(); ctl.Serve(ctx, d.handle, d.log.With("component", "control")) }()
	go func() { defer wg.Done(); d.watch(ctx) }()
	go func() { defer wg.Done(); d.heal(ctx) }()     // heal.go
	go func() { defer wg.Done(); d.watchWAN(ctx) }() // wan.go
	// Save the epoch now, not only at the first checkpoint, so that a
	// crash before then still lets the next start continue it.
	if err := d.store.SaveEpoch(d.srv.Epoch(), time.Now()); err != nil {
		d.log.Warn("saving epoch", "err", err)
	}
	d.log.Info("dpfd running", "version", Version,
		"backend", d.fw.Name(), "leases", d.m.Len(), "epoch", d.srv.Epoch(), "auth", d.srv.AuthMode().String())
	wg.Wait()
	if err := d.store.SaveEpoch(d.srv.Epoch(), time.Now()); err != nil {
		d.log.Warn("saving epoch", "err", err)
	}
	d.saveAuthSeqs()
	d.closeResources()
	d.log.Info("dpfd stopped")
	return serveErr
}

// watch follows the WAN address and LAN subnets and saves the epoch.
func (d *Daemon) watch(ctx context.Context) {
	t := time.NewTicker(watchInterval)
	defer t.Stop()
	// written: the time of the newest epoch value known to be on disk
	// (so the saved value lags by at most an interval and a tick);
	// staged: the time of the value staged last, zero if none;
	// lastAuthSave: when the replay state was last saved.
	written, lastAuthSave := time.Now(), time.Now()
	var staged time.Time
	// A wall-clock step makes the saved epoch's time wrong, and with it
	// the downtime restoredEpoch adds at the next start: save it again at
	// once.
	jumps := clock.NewJumpDetector(d.clk, 0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		d.updateExternal()
		d.mu.Lock()
		lan := lanPrefixes(d.cfg.LANInterfaces)
		if !slices.Equal(lan, d.lan) {
			d.lan = lan
			d.log.Info("LAN subnets changed", "subnets", lan)
			d.m.SetPolicy(d.policy())
		}
		interval := checkpointInterval(d.cfg)
		d.mu.Unlock()
		// The epoch is staged at every tick, so that the next lease
		// checkpoint or change carries it to disk (one flash write
		// instead of two). When no write carried one for an interval, or
		// the clock stepped, it is written at once.
		step, _ := jumps.Check()
		now := time.Now()
		if !d.store.Staged() && !staged.IsZero() {
			written = staged // what was staged last is on disk
		}
		if step != 0 || now.Sub(written) >= interval {
			if err := d.store.SaveEpoch(d.srv.Epoch(), now); err != nil {
				d.log.Warn("saving epoch", "err", err)
			}
			written, staged = now, time.Time{}
		} else {
			d.store.StageEpoch(d.srv.Epoch(), now)
			staged = now
		}
		if step != 0 || now.Sub(lastAuthSave) >= interval {
			d.saveAuthSeqs()
			lastAuthSave = now
		}
	}
}

// Reload re-reads the configuration file and applies it, all or nothing.
// When an option that needs a restart changed (config.RestartNeeded:
// interfaces, backend, db, socket, D-Bus, enabled) it applies nothing and
// names those options in the result: dpfd goes on exactly as it was
// until it is restarted. Otherwise it applies every option in place:
// rules, keys and auth, lifetimes, quotas, external_address,
// reserved_ports, rate_limit and rate_burst, checkpoint_interval and
// log_level (unless the command line set the level). A file that cannot
// be read or is invalid is an error and changes nothing. Reloads are
// serialised.
func (d *Daemon) Reload() (control.ReloadResult, error) {
	if d.cfgPath == "" {
		return control.ReloadResult{}, errors.New("no configuration file to reload")
	}
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, err := config.Load(d.cfgPath)
	if err != nil {
		return control.ReloadResult{}, err
	}
	d.mu.Lock()
	old := d.cfg
	d.mu.Unlock()
	if names := config.RestartNeeded(old, cfg); len(names) > 0 {
		d.log.Warn("configuration not applied: options changed that need a restart of dpfd",
			"file", d.cfgPath, "restart_needed", strings.Join(names, ","))
		return control.ReloadResult{RestartNeeded: names}, nil
	}
	// The server checks the keys again: the one step that can refuse the
	// file, so it comes before anything else changes.
	if err := d.applyAuth(cfg); err != nil {
		return control.ReloadResult{}, fmt.Errorf("applying authentication keys: %w", err)
	}
	d.setLogLevel(cfg.LogLevel)
	d.mu.Lock()
	d.cfg = cfg
	d.m.SetPolicy(d.policy())
	d.mu.Unlock()
	d.m.SetLimits(cfg.MinLifetime, cfg.MaxLifetime, cfg.MaxPerHost, cfg.MaxLeases)
	d.m.SetCheckpointInterval(checkpointInterval(cfg)) // watch reads it from d.cfg
	d.srv.SetRateLimit(cfg.RateLimit, cfg.RateBurst)
	d.reserved.set(cfg.ReservedPorts)
	d.updateExternal()
	d.log.Info("configuration reloaded", "file", d.cfgPath, "rules", len(cfg.Rules))
	return control.ReloadResult{OK: true}, nil
}

// setLogLevel sets the level of the daemon's logger to option log_level,
// unless the command line fixed it (Options.Level nil).
func (d *Daemon) setLogLevel(level string) {
	if d.level == nil {
		return
	}
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		d.log.Warn("option log_level not applied", "err", err) // the parser accepts only valid levels
		return
	}
	d.level.Set(l)
}

// Reconcile makes the firewall match the leases again (Sync re-creates
// dpfd's tables and chains if they are gone).
func (d *Daemon) Reconcile() error {
	return d.m.SyncFirewall()
}

func (d *Daemon) closeResources() {
	if d.fw != nil {
		d.fw.Close()
	}
	if d.store != nil {
		d.store.Close()
	}
}
