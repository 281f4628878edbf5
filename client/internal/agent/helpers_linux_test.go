package agent_test

// Helpers for the tests that run real programs. As root, TestMain re-runs
// the test binary in a new network namespace (clone with CLONE_NEWNET, so
// the namespace has no name to clean up and dies with the process) where
// only lo exists, carrying 127.0.0.1 and 192.0.2.1 (TEST-NET-1, standing in
// for a LAN address). The programs may then listen on wildcard addresses
// without being reachable from anywhere. Without root these tests skip, or
// fail when DPF_REQUIRE_ROOT_TESTS=1.

import (
	"bytes"
	"context"
	"debug/elf"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/client/internal/agent"
	"github.com/dpf-router/dpf/client/internal/agent/agenttest"
)

const (
	// netnsEnv marks the re-run test binary inside its network namespace.
	netnsEnv = "DPF_AGENT_TEST_NETNS"
	// helperEnv makes the test binary run its arguments under agent.Run
	// and exit with Run's exit code (see startOnTerminal).
	helperEnv = "DPF_AGENT_TEST_HELPER"
	// requireRootEnv turns skips for want of root into failures (CI).
	requireRootEnv = "DPF_REQUIRE_ROOT_TESTS"
	// lanAddr is put on lo in the namespace as a non-loopback address.
	lanAddr = "192.0.2.1"

	// waitTimeout bounds every wait for a program or the agent.
	waitTimeout = 15 * time.Second
	// quiet is how long a test watches for something that must not happen
	// (several poll intervals and one full scan).
	quiet = 2500 * time.Millisecond
	// cmdTimeout bounds helper commands (gcc, go build, ip).
	cmdTimeout = 2 * time.Minute
)

func TestMain(m *testing.M) {
	if os.Getenv(helperEnv) == "1" {
		os.Exit(runHelper(os.Args[1:]))
	}
	if os.Geteuid() == 0 && os.Getenv(netnsEnv) == "" && !fuzzing() {
		os.Exit(rerunInNetns())
	}
	if os.Getenv(netnsEnv) == "1" {
		for _, args := range [][]string{{"link", "set", "lo", "up"}, {"addr", "add", lanAddr + "/24", "dev", "lo"}} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "ip %s: %v\n%s", strings.Join(args, " "), err, out)
				os.Exit(1)
			}
		}
	}
	code := m.Run()
	if shim.dir != "" {
		os.RemoveAll(shim.dir)
	}
	os.Exit(code)
}

// fuzzing reports whether "go test -fuzz" runs this binary: the fuzzing
// engine talks to its workers over inherited pipes that a re-run would
// cut, and the fuzz targets need no namespace.
func fuzzing() bool {
	for _, a := range os.Args[1:] {
		if strings.HasPrefix(a, "-test.fuzz") {
			return true
		}
	}
	return false
}

// rerunInNetns runs this test binary again, with the same arguments, in a
// new network namespace, and returns its exit code.
func rerunInNetns() int {
	runtime.LockOSThread() // Pdeathsig is tied to the forking thread
	cmd := exec.Command(os.Args[0], os.Args[1:]...)
	cmd.Env = append(os.Environ(), netnsEnv+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGINT, syscall.SIGTERM, syscall.SIGQUIT)
	if err := cmd.Start(); err != nil {
		fmt.Fprintln(os.Stderr, "re-running the tests in a network namespace:", err)
		return 1
	}
	go func() {
		for s := range sigs {
			cmd.Process.Signal(s)
		}
	}()
	err := cmd.Wait()
	if ee, ok := err.(*exec.ExitError); ok {
		return max(ee.ExitCode(), 1)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

// requireNetns skips (or fails, see requireRootEnv) unless the test runs in
// the private network namespace.
func requireNetns(t *testing.T) {
	t.Helper()
	if os.Getenv(netnsEnv) == "1" {
		return
	}
	if os.Getenv(requireRootEnv) == "1" {
		t.Fatalf("test needs root (it runs servers in a private network namespace) and %s=1 forbids skipping it", requireRootEnv)
	}
	t.Skipf("skipping: test needs root to run servers in a private network namespace; set %s=1 to make this a failure", requireRootEnv)
}

// requireTool returns the path of a program the test needs.
func requireTool(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	if os.Getenv(requireRootEnv) == "1" {
		t.Fatalf("test needs %s: %v", name, err)
	}
	t.Skipf("skipping: test needs %s: %v", name, err)
	return ""
}

func command(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// shim is the preload library, built once per test binary.
var shim struct {
	once sync.Once
	dir  string
	path string
	err  error
}

// shimLib builds client/preload/dpf_preload.c with the production flags
// and returns the library's path; gcc must not warn.
func shimLib(t *testing.T) string {
	t.Helper()
	gcc := requireTool(t, "gcc")
	shim.once.Do(func() {
		if shim.dir, shim.err = os.MkdirTemp("", "dpf-preload-test-"); shim.err != nil {
			return
		}
		shim.path = filepath.Join(shim.dir, "libdpf-preload.so")
		cmd := exec.Command(gcc, "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-o", shim.path,
			"../../preload/dpf_preload.c", "-ldl", "-pthread")
		out, err := cmd.CombinedOutput()
		switch {
		case err != nil:
			shim.err = fmt.Errorf("gcc: %v\n%s", err, out)
		case len(bytes.TrimSpace(out)) > 0:
			shim.err = fmt.Errorf("gcc warns:\n%s", out)
		}
	})
	if shim.err != nil {
		t.Fatal(shim.err)
	}
	return shim.path
}

// python returns the python3 interpreter (resolved past pyenv shims).
func python(t *testing.T) string {
	t.Helper()
	p := requireTool(t, "python3")
	return strings.TrimSpace(command(t, nil, p, "-c", "import sys; print(sys.executable)"))
}

// script returns the path of a testdata Python script.
func script(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// goServer builds testdata/goserver as a static binary.
func goServer(t *testing.T) string {
	t.Helper()
	goTool := requireTool(t, "go")
	bin := filepath.Join(t.TempDir(), "goserver")
	command(t, append(os.Environ(), "CGO_ENABLED=0"), goTool, "build", "-o", bin, "./testdata/goserver")
	f, err := elf.Open(bin)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type == elf.PT_INTERP {
			t.Fatal("goserver is dynamically linked")
		}
	}
	return bin
}

// line is one line of the program's output and when it came.
type line struct {
	text string
	at   time.Time
}

// lines is an io.Writer that collects the program's output by line.
type lines struct {
	mu      sync.Mutex
	partial []byte
	got     []line
	changed chan struct{}
}

func newLines() *lines { return &lines{changed: make(chan struct{})} }

func (l *lines) Write(b []byte) (int, error) {
	now := time.Now()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			break
		}
		l.got = append(l.got, line{string(l.partial[:i]), now})
		l.partial = l.partial[i+1:]
	}
	close(l.changed)
	l.changed = make(chan struct{})
	return len(b), nil
}

func (l *lines) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var b strings.Builder
	for _, x := range l.got {
		b.WriteString(x.text + "\n")
	}
	b.Write(l.partial)
	return b.String()
}

// wait returns the first line matching re, with its submatches.
func (l *lines) wait(t *testing.T, re string) (line, []string) {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(waitTimeout)
	for {
		l.mu.Lock()
		for _, x := range l.got {
			if m := rx.FindStringSubmatch(x.text); m != nil {
				l.mu.Unlock()
				return x, m
			}
		}
		ch := l.changed
		l.mu.Unlock()
		select {
		case <-ch:
		case <-deadline:
			t.Fatalf("no output line matching %q; output so far:\n%s", re, l.String())
		}
	}
}

// run is a Run in progress.
type run struct {
	m      *agenttest.Mapper
	out    *lines
	errOut *lines
	log    *lines
	cancel context.CancelFunc
	done   chan struct{}
	code   int
	err    error

	mu     sync.Mutex
	events []agent.Event
}

// start runs argv under agent.Run with a fake mapper; cfg.Mapper may be
// preset. The test's cleanup cancels the Run and waits for it.
func start(t *testing.T, cfg agent.Config, argv ...string) *run {
	t.Helper()
	r := &run{out: newLines(), errOut: newLines(), log: newLines(), done: make(chan struct{})}
	if cfg.Mapper == nil {
		cfg.Mapper = &agenttest.Mapper{}
	}
	r.m, _ = cfg.Mapper.(*agenttest.Mapper)
	if cfg.PollInterval == 0 {
		cfg.PollInterval = 100 * time.Millisecond
	}
	cfg.Logger = slog.New(slog.NewTextHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg.Stdin = strings.NewReader("")
	cfg.Stdout, cfg.Stderr = r.out, r.errOut
	cfg.OnChange = func(e agent.Event) {
		r.mu.Lock()
		defer r.mu.Unlock()
		r.events = append(r.events, e)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		defer close(r.done)
		r.code, r.err = agent.Run(ctx, cfg, argv)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(waitTimeout):
			t.Errorf("Run did not return after its context was cancelled")
		}
		if t.Failed() || os.Getenv("DPF_AGENT_TEST_LOG") == "1" {
			t.Logf("program stdout:\n%s\nprogram stderr:\n%s\nagent log:\n%s", r.out, r.errOut, r.log)
		}
	})
	return r
}

// stop cancels the Run and waits for it to return.
func (r *run) stop(t *testing.T) {
	t.Helper()
	r.cancel()
	select {
	case <-r.done:
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return after its context was cancelled")
	}
}

// result waits for Run to return.
func (r *run) result(t *testing.T) (int, error) {
	t.Helper()
	select {
	case <-r.done:
		return r.code, r.err
	case <-time.After(waitTimeout):
		t.Fatal("Run did not return")
		return 0, nil
	}
}

// returned reports whether Run has returned.
func (r *run) returned() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

// waitOpen waits until proto/port has a pinhole (want true) or none.
func (r *run) waitOpen(t *testing.T, proto string, port uint16, want bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	if err := r.m.Wait(ctx, func() bool { return (r.m.Open(proto, port) > 0) == want }); err != nil {
		t.Fatalf("%s/%d open=%v: %v; calls %+v", proto, port, want, err, r.m.Calls())
	}
	if n := r.m.Open(proto, port); n > 1 {
		t.Fatalf("%s/%d has %d pinholes", proto, port, n)
	}
}

// lastCall returns the time of the last call of op for proto/port.
func (r *run) lastCall(t *testing.T, op, proto string, port uint16) time.Time {
	t.Helper()
	var at time.Time
	for _, c := range r.m.CallsFor(proto, port) {
		if c.Op == op && c.Err == nil {
			at = c.Done
		}
	}
	if at.IsZero() {
		t.Fatalf("no %s call for %s/%d", op, proto, port)
	}
	return at
}

func (r *run) eventList() []agent.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]agent.Event(nil), r.events...)
}

// kill signals a process the test started (through Run), by pid.
func kill(t *testing.T, pid int, sig syscall.Signal) time.Time {
	t.Helper()
	now := time.Now()
	if err := syscall.Kill(pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Fatalf("kill %d: %v", pid, err)
	}
	return now
}

func atoi(t *testing.T, s string) int {
	t.Helper()
	var n int
	if _, err := fmt.Sscan(s, &n); err != nil {
		t.Fatalf("not a number: %q", s)
	}
	return n
}

func port(t *testing.T, s string) uint16 {
	t.Helper()
	n := atoi(t, s)
	if n <= 0 || n > 65535 {
		t.Fatalf("bad port %q", s)
	}
	return uint16(n)
}

// noZombies fails the test if a child of this process is a zombie: Run
// must reap the orphans it adopted.
func noZombies(t *testing.T) {
	t.Helper()
	dirs, _ := filepath.Glob("/proc/[0-9]*/stat")
	for _, d := range dirs {
		b, err := os.ReadFile(d)
		if err != nil {
			continue
		}
		i := bytes.LastIndexByte(b, ')')
		if f := strings.Fields(string(b[i+1:])); len(f) > 1 && f[0] == "Z" && f[1] == strconv.Itoa(os.Getpid()) {
			t.Errorf("zombie child left: %s", b)
		}
	}
}

// releaseBound is how soon a pinhole must go after its socket: the agent
// polls every 250 ms, and the wrong behaviour is "never" (or when the
// lease lapses), so the bound is generous enough for a loaded CI machine.
const releaseBound = 3 * time.Second

// within fails the test if d is more than max.
func within(t *testing.T, what string, d, max time.Duration) {
	t.Helper()
	if d > max {
		t.Errorf("%s took %v, more than %v", what, d, max)
	}
}

// runHelper runs argv under agent.Run with a fake mapper and this
// process's stdio, and returns Run's exit code.
func runHelper(argv []string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	code, err := agent.Run(context.Background(), agent.Config{Mapper: &agenttest.Mapper{}, Logger: log}, argv)
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
	}
	return code
}

// terminalRun is agent.Run in a helper process on a new pseudo-terminal,
// which is the helper's controlling terminal with the helper's process
// group in the foreground: as "dpf run" started from an interactive shell.
type terminalRun struct {
	master *os.File // write ^C here
	out    *lines   // what the terminal shows
	cmd    *exec.Cmd
	done   chan struct{} // closed when the helper has exited
}

// startOnTerminal starts argv under agent.Run (runHelper) on a new
// pseudo-terminal. The test's cleanup kills the helper if it still runs.
func startOnTerminal(t *testing.T, argv ...string) *terminalRun {
	t.Helper()
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC|unix.O_NONBLOCK, 0)
	if err != nil {
		t.Skipf("skipping: no pseudo-terminals: %v", err)
	}
	master := os.NewFile(uintptr(mfd), "/dev/ptmx")
	t.Cleanup(func() { master.Close() })
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		t.Fatal("unlockpt:", err)
	}
	n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
	if err != nil {
		t.Fatal("ptsname:", err)
	}
	slave, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer slave.Close()

	r := &terminalRun{master: master, out: newLines(), done: make(chan struct{})}
	r.cmd = exec.Command(os.Args[0], argv...)
	r.cmd.Env = append(os.Environ(), helperEnv+"=1")
	r.cmd.Stdin, r.cmd.Stdout, r.cmd.Stderr = slave, slave, slave
	r.cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go io.Copy(r.out, master) // ends with EIO once the terminal is hung up, or at Close
	go func() {
		r.cmd.Wait()
		close(r.done)
	}()
	t.Cleanup(func() {
		select {
		case <-r.done:
		default:
			r.cmd.Process.Kill()
			<-r.done
		}
		if t.Failed() {
			t.Logf("terminal:\n%s", r.out)
		}
	})
	return r
}
