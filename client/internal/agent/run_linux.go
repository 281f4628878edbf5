package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/client/internal/sockdiag"
)

// Timing of Run.
const (
	// orphanGrace is how long, after the program's main process exited
	// and no mapped socket is left, Run waits for remaining descendants to
	// open one: a daemon whose parent exits before the daemon binds.
	orphanGrace = 2 * time.Second
	// fullScanInterval: the open files of all descendants are read when a
	// new socket appears in the kernel's list, and at least this often.
	fullScanInterval = 2 * time.Second
	// hostAddrTTL is how long the host's IPv4 addresses are cached.
	hostAddrTTL = 5 * time.Second
	// connTimeout bounds reading a request and writing a reply on the
	// agent socket; the shim writes its request at once.
	connTimeout = 2 * time.Second
	// shimMargin is added to MapTimeout for the shim's own timeout, so that
	// the agent's ERR reply reaches it before it gives up.
	shimMargin = time.Second
	// killWait is how long Run waits for the program after SIGKILL.
	killWait = 5 * time.Second
	// drainTimeout is how long copying the program's output may go on
	// after Run is done, for descendants that still hold the pipe.
	drainTimeout = time.Second
	// closeTimeout bounds the releases at the end.
	closeTimeout = releaseTimeout + time.Second
)

// forwarded are the signals Run passes on to the program.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP}

// dumpReqs select what can be mapped: listening TCP and unconnected UDP
// sockets, IPv4 and IPv6.
var dumpReqs = []sockdiag.Request{
	{Family: sockdiag.AFInet, Protocol: sockdiag.ProtoTCP, States: sockdiag.States(sockdiag.StateListen)},
	{Family: sockdiag.AFInet6, Protocol: sockdiag.ProtoTCP, States: sockdiag.States(sockdiag.StateListen)},
	{Family: sockdiag.AFInet, Protocol: sockdiag.ProtoUDP, States: sockdiag.States(sockdiag.StateClose)},
	{Family: sockdiag.AFInet6, Protocol: sockdiag.ProtoUDP, States: sockdiag.States(sockdiag.StateClose)},
}

// Run starts argv as a child process and keeps pinholes in step with the
// sockets it and its descendants listen on (see the package comment). It
// returns the exit code of the program's main process (128+n after signal
// n) once that process has exited and no descendant holds a mapped socket
// any more, after releasing every pinhole.
//
// While it runs, SIGINT, SIGTERM and SIGHUP sent to the caller are passed on
// to the program (to its main process, or to its remaining descendants once
// that has exited), and the calling process is a child subreaper. A SIGINT
// is not passed on to processes in the terminal's foreground process group,
// which had it from the terminal (^C) already; a main process that moved to
// a group of its own (setpgid, setsid) gets it from Run. When ctx
// is cancelled Run sends SIGTERM, then SIGKILL to the whole process tree
// after Config.KillGrace, and returns ctx's error with the exit code.
//
// If the program cannot be started Run returns 127 when it was not found,
// 126 otherwise, and the error.
func Run(ctx context.Context, cfg Config, argv []string) (exitCode int, err error) {
	if cfg.Mapper == nil {
		return 126, errors.New("agent: Config.Mapper is required")
	}
	if len(argv) == 0 {
		return 127, errors.New("agent: no program to run")
	}
	if cfg.PollInterval <= 0 {
		cfg.PollInterval = DefaultPollInterval
	}
	if cfg.MapTimeout <= 0 {
		cfg.MapTimeout = DefaultMapTimeout
	}
	if cfg.KillGrace <= 0 {
		cfg.KillGrace = DefaultKillGrace
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}

	path, err := exec.LookPath(argv[0])
	if err != nil {
		return 127, fmt.Errorf("agent: %w", err)
	}
	if cfg.PreloadLib != "" {
		lib, err := filepath.Abs(cfg.PreloadLib)
		if err == nil {
			_, err = os.Stat(lib)
		}
		if err != nil {
			return 126, fmt.Errorf("agent: preload library: %w", err)
		}
		cfg.PreloadLib = lib
		if why := secureExec(path); why != "" {
			log.Warn("the program "+why+", so the dynamic loader ignores LD_PRELOAD and the preload shim will not load; "+
				"its sockets are found by polling only, and not at all if dpf may not read its /proc/<pid>/fd (run dpf as the same user or root)",
				"program", path)
		}
	}

	dir, sockPath, ln, err := listenAgent()
	if err != nil {
		return 126, err
	}
	defer os.RemoveAll(dir)

	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	a := &agent{
		cfg:     cfg,
		log:     log,
		self:    os.Getpid(),
		marker:  EnvAgentSock + "=" + sockPath,
		ctx:     runCtx,
		kick:    make(chan struct{}, 1),
		skipped: map[uint64]string{},
		noted:   map[uint16]bool{},
		foreign: map[uint64]bool{},
		known:   map[int]uint64{},
		notOurs: map[int]uint64{},
	}
	a.t = newTracker(cfg.Mapper, log, cfg.OnChange, time.Now)
	if a.ephemeral, err = ephemeralPorts(); err != nil {
		log.Warn("cannot read the ephemeral port range; UDP sockets found by polling are all mapped", "err", err)
	}

	var srvWG sync.WaitGroup // the accept loop and one goroutine per connection
	srvWG.Go(func() { a.serve(ln, &srvWG) })
	defer func() {
		ln.Close()
		stop() // ends BIND waits
		srvWG.Wait()
	}()

	// Signals are caught before the program starts, so that none is lost.
	sigCh := make(chan os.Signal, 4)
	signal.Notify(sigCh, forwarded...)
	defer signal.Stop(sigCh)

	if err := acquireSubreaper(); err != nil {
		log.Warn("cannot become a child subreaper; daemons that detach are not followed", "err", err)
	} else {
		defer releaseSubreaper()
	}

	env := cfg.Env
	if env == nil {
		env = os.Environ()
	}
	cmd := exec.Command(path)
	cmd.Args = argv
	cmd.Env = childEnv(env, sockPath, cfg.PreloadLib, cfg.MapTimeout+shimMargin)
	pipes, err := setupStdio(cmd, cfg)
	if err != nil {
		return 126, err
	}
	if err := cmd.Start(); err != nil {
		pipes.abort()
		return 126, fmt.Errorf("agent: starting %s: %w", path, err)
	}
	pipes.started()
	defer pipes.finish(drainTimeout)
	a.mainPID = cmd.Process.Pid
	log.Info("program started", "pid", a.mainPID, "argv", argv)

	waitCh := make(chan *os.ProcessState, 1)
	go func() {
		st, _ := cmd.Process.Wait() // always returns once the child exits
		waitCh <- st
	}()

	exitCode, err = a.loop(ctx, cmd.Process, waitCh, sigCh)

	if n := len(a.tree); n > 0 {
		log.Info("program done; leaving processes without a mapped socket running", "count", n)
	}
	cctx, cancel := context.WithTimeout(context.Background(), closeTimeout)
	defer cancel()
	if cerr := a.t.close(cctx); cerr != nil {
		log.Warn("releasing pinholes", "err", cerr)
	}
	return exitCode, err
}

// agent is the state of one Run.
type agent struct {
	cfg    Config
	log    *slog.Logger
	t      *tracker
	self   int
	marker string          // EnvAgentSock=path: the program's processes carry it
	ctx    context.Context // done when Run ends
	kick   chan struct{}   // asks the loop to poll now

	ephemeral [2]uint16

	mu        sync.Mutex
	skipped   map[uint64]string // inodes decided against, with the reason
	noted     map[uint16]bool   // discovery ports whose skip was logged at info level
	hostAddrs map[netip.Addr]bool
	hostTime  time.Time

	// Used by the loop goroutine only.
	mainPID  int
	mainDone bool
	tree     map[int]proc    // the program's processes at the last poll
	known    map[int]uint64  // pid -> start time of the processes in tree
	notOurs  map[int]uint64  // pid -> start time of our children that are not the program's
	foreign  map[uint64]bool // inodes no descendant held at the last full scan
	lastFull time.Time
	dumpErr  string // last dump error logged
}

// loop polls until the program is done and returns its exit code.
func (a *agent) loop(ctx context.Context, main *os.Process, waitCh <-chan *os.ProcessState, sigCh <-chan os.Signal) (int, error) {
	ticker := time.NewTicker(a.cfg.PollInterval)
	defer ticker.Stop()
	// wake fires at the next deadline (SIGKILL, giving up, the end of
	// orphanGrace) in case that comes before the next poll.
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	var (
		exitCode = -1
		ctxErr   error
		ctxDone  = ctx.Done()
		killAt   time.Time // set when ctx is cancelled
		giveUpAt time.Time // set when SIGKILL was sent
		lastBusy = time.Now()
		// signalAll signals the main process, or the rest of the program
		// once that is gone, but not the processes in process group skip
		// (-1: none).
		signalAll = func(sig syscall.Signal, skip int) {
			if !a.mainDone {
				if skip < 0 || skip != a.mainGroup() {
					main.Signal(sig)
				}
				return
			}
			for pid, p := range a.tree {
				if p.state != 'Z' && p.pgrp != skip {
					unix.Kill(pid, sig)
				}
			}
		}
	)
	for {
		select {
		case <-ticker.C:
		case <-wake.C:
		case <-a.kick:
		case st := <-waitCh:
			a.mainDone = true
			exitCode = exitStatus(st)
			a.log.Info("program exited", "pid", a.mainPID, "code", exitCode)
			if !killAt.IsZero() {
				// Stopping: what the main process left behind gets
				// SIGTERM too, rather than waiting for SIGKILL.
				a.poll(time.Now())
				signalAll(syscall.SIGTERM, -1)
			}
		case sig := <-sigCh:
			// A ^C on the terminal reaches the foreground process group:
			// ours, and the main process's unless it moved to another
			// group (setpgid, setsid). Do not send a second SIGINT to
			// those who had it; do send one to those who did not.
			skip := -1
			if sig == syscall.SIGINT {
				skip = foregroundGroup()
			}
			a.log.Info("forwarding signal", "signal", sig, "terminal_group", skip)
			signalAll(sig.(syscall.Signal), skip)
		case <-ctxDone:
			ctxDone, ctxErr = nil, ctx.Err()
			a.log.Info("stopping the program", "reason", ctxErr)
			signalAll(syscall.SIGTERM, -1)
			killAt = time.Now().Add(a.cfg.KillGrace)
		}
		now := time.Now()
		a.poll(now)
		if !killAt.IsZero() && giveUpAt.IsZero() && !now.Before(killAt) {
			a.log.Warn("killing the program", "grace", a.cfg.KillGrace)
			if !a.mainDone {
				main.Signal(syscall.SIGKILL)
			}
			for pid, p := range a.tree {
				if p.state != 'Z' {
					unix.Kill(pid, syscall.SIGKILL)
				}
			}
			giveUpAt = now.Add(killWait)
		}
		if !giveUpAt.IsZero() && now.After(giveUpAt) {
			if !a.mainDone {
				return exitCode, fmt.Errorf("agent: program pid %d did not exit after SIGKILL", a.mainPID)
			}
			return exitCode, ctxErr
		}
		var next time.Time
		if !a.mainDone || a.t.count() > 0 {
			lastBusy = now
		} else if len(a.tree) == 0 || now.Sub(lastBusy) >= orphanGrace {
			return exitCode, ctxErr
		} else {
			next = lastBusy.Add(orphanGrace)
		}
		for _, t := range []time.Time{killAt, giveUpAt} {
			if t.After(now) && (next.IsZero() || t.Before(next)) {
				next = t
			}
		}
		if !next.IsZero() {
			wake.Reset(next.Sub(now) + time.Millisecond)
		}
	}
}

// poll brings the tracked sockets in line with the kernel's.
func (a *agent) poll(now time.Time) {
	mark := a.t.mark()
	socks, failed := a.dump()
	exists := func(inode uint64, key portKey) bool {
		_, ok := socks[inode]
		return ok || failed[key.proto]
	}
	a.t.prune(mark, exists)
	a.mu.Lock()
	for inode := range a.skipped {
		if _, ok := socks[inode]; !ok {
			delete(a.skipped, inode)
		}
	}
	a.mu.Unlock()
	for inode := range a.foreign {
		if _, ok := socks[inode]; !ok {
			delete(a.foreign, inode)
		}
	}

	if procs, err := readProcs(a.self); err != nil {
		a.log.Warn("reading processes", "err", err)
	} else {
		root := a.mainPID
		if a.mainDone {
			root = 0 // reaped; the pid may belong to someone else now
		}
		a.tree = descendants(procs, a.self, root, a.known, a.ours)
		clear(a.known)
		for pid, p := range a.tree {
			a.known[pid] = p.start
		}
		a.reap()
	}

	fresh := false
	for inode := range socks {
		if !a.foreign[inode] && !a.t.has(inode) && !a.isSkipped(inode) {
			fresh = true
			break
		}
	}
	if !fresh && now.Sub(a.lastFull) < fullScanInterval {
		a.t.retry()
		return
	}
	a.lastFull = now
	held := map[uint64]bool{}
	for pid, p := range a.tree {
		if p.state != 'Z' {
			for _, inode := range socketInodes(pid) {
				held[inode] = true
			}
		}
	}
	clear(a.foreign)
	for inode, s := range socks {
		switch {
		case !held[inode]:
			if !a.t.has(inode) {
				a.foreign[inode] = true
			}
		case a.t.has(inode) || a.isSkipped(inode):
		default:
			key, reason := decide(s, false, a.host())
			if reason != "" {
				a.skip(inode, s, reason)
				continue
			}
			a.log.Info("found socket", "port", key, "local", s.Local, "inode", inode)
			a.t.add(inode, key, false)
		}
	}
	a.t.retry()
}

// dump lists the kernel's candidate sockets by inode. failed holds the
// protocols whose list could not be read (then their sockets count as
// present).
func (a *agent) dump(protos ...uint8) (map[uint64]sockdiag.Socket, map[string]bool) {
	socks := map[uint64]sockdiag.Socket{}
	failed := map[string]bool{}
	for _, req := range dumpReqs {
		if len(protos) > 0 && protos[0] != req.Protocol {
			continue
		}
		list, err := sockdiag.Dump(req)
		if err != nil {
			failed[protoName(req.Protocol)] = true
			a.mu.Lock()
			if msg := err.Error(); msg != a.dumpErr {
				a.dumpErr = msg
				a.log.Warn("listing sockets", "err", err)
			}
			a.mu.Unlock()
			continue
		}
		for _, s := range list {
			socks[uint64(s.Inode)] = s
		}
	}
	return socks, failed
}

// ours reports whether p, a child of ours that is not known, belongs to the
// program: an orphan that detached before a poll saw it. It carries our
// EnvAgentSock entry in its environment.
func (a *agent) ours(p proc) bool {
	if p.state == 'Z' || a.notOurs[p.pid] == p.start {
		return false
	}
	if hasEnv(p.pid, a.marker) {
		return true
	}
	a.notOurs[p.pid] = p.start
	return false
}

// reap collects the program's orphans that died; the main process is
// Wait's. Only pids known to be the program's are waited for, so children
// the caller started itself are left to it.
func (a *agent) reap() {
	for pid, p := range a.tree {
		if p.ppid == a.self && pid != a.mainPID && p.state == 'Z' {
			var ws unix.WaitStatus
			if got, _ := unix.Wait4(pid, &ws, unix.WNOHANG, nil); got == pid {
				delete(a.tree, pid)
			}
		}
	}
	for pid, start := range a.notOurs {
		if a.known[pid] == start {
			delete(a.notOurs, pid)
		}
	}
	if len(a.notOurs) > 1024 { // forget exited ones now and then
		clear(a.notOurs)
	}
}

// mainGroup returns the main process's current process group, or -1 when
// it cannot be read. The program may have left the group it started in
// (ours) with setpgid or setsid.
func (a *agent) mainGroup() int {
	p, err := readStat(a.mainPID)
	if err != nil {
		return -1
	}
	return p.pgrp
}

func (a *agent) isSkipped(inode uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	_, ok := a.skipped[inode]
	return ok
}

// skip records that inode is not mapped, logging it the first time.
func (a *agent) skip(inode uint64, s sockdiag.Socket, reason string) {
	a.mu.Lock()
	_, seen := a.skipped[inode]
	a.skipped[inode] = reason
	a.mu.Unlock()
	if seen {
		return
	}
	level := slog.LevelDebug
	switch {
	case reason == reasonV6Only:
		level = slog.LevelInfo
	case strings.HasPrefix(reason, reasonDiscovery):
		port := s.Local.Port()
		a.mu.Lock()
		if !a.noted[port] {
			a.noted[port] = true
			level = slog.LevelInfo
		}
		a.mu.Unlock()
	}
	a.log.Log(context.Background(), level, "not mapping socket", "proto", protoName(s.Protocol), "local", s.Local, "inode", inode, "reason", reason)
}

func (a *agent) unskip(inode uint64) {
	a.mu.Lock()
	defer a.mu.Unlock()
	delete(a.skipped, inode)
}

// host returns what decide needs, with the host's addresses cached for
// hostAddrTTL.
func (a *agent) host() host {
	a.mu.Lock()
	defer a.mu.Unlock()
	if now := time.Now(); a.hostAddrs == nil || now.Sub(a.hostTime) > hostAddrTTL {
		a.hostAddrs = map[netip.Addr]bool{}
		a.hostTime = now
		addrs, err := net.InterfaceAddrs()
		if err != nil {
			a.log.Warn("reading the host's addresses", "err", err)
		}
		for _, ad := range addrs {
			if n, ok := ad.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap().Is4() {
					a.hostAddrs[ip.Unmap()] = true
				}
			}
		}
	}
	addrs := a.hostAddrs // replaced, never changed, so safe to read unlocked
	return host{isLocal: func(ip netip.Addr) bool { return addrs[ip] }, ephemeral: a.ephemeral, allowDiscovery: a.cfg.AllowDiscoveryPorts}
}
