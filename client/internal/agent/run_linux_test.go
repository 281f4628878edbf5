package agent_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/client/internal/agent"
	"github.com/dpf-router/dpf/client/internal/agent/agenttest"
)

// An HTTP server under the shim: its listen() returns only after the
// pinhole is granted, and killing it releases the pinhole at once.
func TestShimMapsBeforeListenReturns(t *testing.T) {
	requireNetns(t)
	py := python(t)
	m := &agenttest.Mapper{Delay: 300 * time.Millisecond}
	r := start(t, agent.Config{Mapper: m, PreloadLib: shimLib(t), PollInterval: time.Hour},
		"sh", "-c", `echo PID $$; cd "$1" && exec "$2" -u -m http.server --bind 0.0.0.0 0`, "sh", t.TempDir(), py)
	_, pm := r.out.wait(t, `^PID (\d+)$`)
	serving, sm := r.out.wait(t, `^Serving HTTP on 0\.0\.0\.0 port (\d+)`)
	p := port(t, sm[1])
	r.waitOpen(t, "tcp", p, true)
	// Polling is off (PollInterval 1 h), so only the shim can have asked;
	// and it did so before listen() returned.
	if mapped := r.lastCall(t, "map", "tcp", p); !mapped.Before(serving.at) {
		t.Errorf("pinhole granted at %v, after the server printed its port at %v", mapped, serving.at)
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", sm[1]), waitTimeout)
	if err != nil {
		t.Fatal(err)
	}
	c.Close()

	killed := kill(t, atoi(t, pm[1]), syscall.SIGTERM)
	code, err := r.result(t)
	if code != 128+int(syscall.SIGTERM) || err != nil {
		t.Errorf("Run = %d, %v; want 143, nil", code, err)
	}
	within(t, "release after kill", r.lastCall(t, "release", "tcp", p).Sub(killed), releaseBound)
	if ev := r.eventList(); len(ev) != 2 || !ev[0].Opened || ev[1].Opened || ev[0].External.Port() != p {
		t.Errorf("events %+v", ev)
	}
}

// close() in the shim makes the agent look at once: the pinhole goes
// although polling is off.
func TestCloseHint(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t), PollInterval: time.Hour}, python(t), "-u", "-c",
		`import socket, time
s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen()
print("PORT", s.getsockname()[1], flush=True)
time.sleep(0.3)
s.close()
print("CLOSED", flush=True)
time.sleep(60)`)
	_, m := r.out.wait(t, `^PORT (\d+)$`)
	p := port(t, m[1])
	r.waitOpen(t, "tcp", p, true)
	closed, _ := r.out.wait(t, `^CLOSED$`)
	r.waitOpen(t, "tcp", p, false)
	within(t, "release after close()", r.lastCall(t, "release", "tcp", p).Sub(closed.at), releaseBound)
	if r.returned() {
		t.Error("Run returned while the program runs")
	}
}

// A port-0 bind, then listen: the pinhole is for the port the kernel chose.
func TestPortZero(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, python(t), "-u", script(t, "sockets.py"), "tcp4,0.0.0.0,0")
	_, sm := r.out.wait(t, `^SOCK 0 (\d+)$`)
	p := port(t, sm[1])
	if r.m.Open("tcp", p) != 1 { // already at the print: listen() waited
		t.Errorf("tcp/%d not open when listen() returned", p)
	}
	if calls := r.m.Calls(); len(calls) != 1 || calls[0].Port != p {
		t.Errorf("calls %+v", calls)
	}
}

// A pre-fork server: the parent exits, the workers keep the socket and the
// pinhole; the last worker's death releases it and ends Run with the
// parent's exit code.
func TestPreFork(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, python(t), "-u", script(t, "prefork.py"))
	_, pm := r.out.wait(t, `^PORT (\d+)$`)
	p := port(t, pm[1])
	r.waitOpen(t, "tcp", p, true)
	_, wm := r.out.wait(t, `^WORKERS (\d+) (\d+)$`)
	workers := []int{atoi(t, wm[1]), atoi(t, wm[2])}
	time.Sleep(quiet) // the parent has exited by now
	if r.returned() || r.m.Open("tcp", p) != 1 {
		t.Fatalf("returned=%v open=%d while workers hold the socket", r.returned(), r.m.Open("tcp", p))
	}
	kill(t, workers[0], syscall.SIGKILL)
	time.Sleep(quiet)
	if r.returned() || r.m.Open("tcp", p) != 1 {
		t.Fatalf("returned=%v open=%d while one worker holds the socket", r.returned(), r.m.Open("tcp", p))
	}
	killed := kill(t, workers[1], syscall.SIGKILL)
	r.waitOpen(t, "tcp", p, false)
	within(t, "release after the last worker", r.lastCall(t, "release", "tcp", p).Sub(killed), releaseBound)
	if code, err := r.result(t); code != 7 || err != nil {
		t.Errorf("Run = %d, %v; want the parent's 7", code, err)
	}
	noZombies(t)
	if calls := r.m.CallsFor("tcp", p); len(calls) != 2 {
		t.Errorf("calls %+v, want one map and one release", calls)
	}
}

// The socket, dup2()'d to another fd, is inherited through exec by a
// child; the original process exits. The pinhole stays with the child.
func TestDupExec(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, python(t), "-u", script(t, "dupexec.py"))
	_, m := r.out.wait(t, `^PORT (\d+) CHILD (\d+)$`)
	p, child := port(t, m[1]), atoi(t, m[2])
	r.waitOpen(t, "tcp", p, true)
	time.Sleep(quiet)
	if r.returned() || r.m.Open("tcp", p) != 1 {
		t.Fatalf("returned=%v open=%d while the exec'd child holds the socket", r.returned(), r.m.Open("tcp", p))
	}
	link, err := os.Readlink("/proc/" + m[2] + "/fd/9")
	if err != nil || !strings.HasPrefix(link, "socket:") {
		t.Fatalf("child fd 9: %q, %v", link, err)
	}
	killed := kill(t, child, syscall.SIGTERM)
	r.waitOpen(t, "tcp", p, false)
	within(t, "release after the child's death", r.lastCall(t, "release", "tcp", p).Sub(killed), releaseBound)
	if code, err := r.result(t); code != 0 || err != nil {
		t.Errorf("Run = %d, %v", code, err)
	}
	noZombies(t)
}

// A daemon that double-forks and binds after its parent exited is followed
// (Run is a subreaper) and keeps Run going.
func TestDaemon(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, python(t), "-u", script(t, "daemon.py"))
	_, m := r.out.wait(t, `^PORT (\d+) PID (\d+)$`)
	p := port(t, m[1])
	r.waitOpen(t, "tcp", p, true)
	killed := kill(t, atoi(t, m[2]), syscall.SIGTERM)
	r.waitOpen(t, "tcp", p, false)
	within(t, "release after the daemon's death", r.lastCall(t, "release", "tcp", p).Sub(killed), releaseBound)
	if code, err := r.result(t); code != 0 || err != nil {
		t.Errorf("Run = %d, %v", code, err)
	}
	noZombies(t)
}

// UDP: a socket bound to a port the program chose is mapped (through the
// shim, even in the ephemeral range) before bind() returns. Client sockets
// are not, and their bind() does not wait: one that only sendto()s, and
// one bound to 0.0.0.0:0 as libuv, Java and resolvers do.
func TestUDP(t *testing.T) {
	requireNetns(t)
	const fixed = 40001 // in the default ephemeral range
	m := &agenttest.Mapper{Delay: time.Second}
	r := start(t, agent.Config{Mapper: m, PreloadLib: shimLib(t)}, python(t), "-u", "-c", `import socket, sys, time
def bind(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    t = time.monotonic()
    s.bind(("0.0.0.0", port))
    print("BOUND", s.getsockname()[1], round(time.monotonic() - t, 3), flush=True)
    return s
c = bind(0)
s = bind(`+strconv.Itoa(fixed)+`)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.sendto(b"x", ("127.0.0.1", 9))
print("CLIENT", u.getsockname()[1], flush=True)
time.sleep(60)`)
	_, m0 := r.out.wait(t, `^BOUND (\d+) ([\d.]+)$`)
	_, m1 := r.out.wait(t, `^BOUND `+strconv.Itoa(fixed)+` ([\d.]+)$`)
	_, m2 := r.out.wait(t, `^CLIENT (\d+)$`)
	any0, sendto := port(t, m0[1]), port(t, m2[1])
	if d, _ := strconv.ParseFloat(m0[2], 64); d > 0.5 {
		t.Errorf("bind(0.0.0.0:0) took %vs; it must not wait for the router", d)
	}
	if d, _ := strconv.ParseFloat(m1[1], 64); d < 0.9 {
		t.Errorf("bind(0.0.0.0:%d) took %vs; it should wait for its pinhole (1 s)", fixed, d)
	}
	if r.m.Open("udp", fixed) != 1 {
		t.Errorf("udp/%d not open when bind() returned", fixed)
	}
	time.Sleep(quiet)
	for _, p := range []uint16{any0, sendto} {
		if calls := r.m.CallsFor("udp", p); len(calls) != 0 {
			t.Errorf("client socket udp/%d mapped: %+v", p, calls)
		}
	}
	if n := len(r.m.Calls()); n != 1 {
		t.Errorf("calls %+v", r.m.Calls())
	}
}

// LAN discovery ports are not mapped unless Config.AllowDiscoveryPorts;
// the shim's bind() gets its answer at once, and the log says why.
func TestDiscoveryPorts(t *testing.T) {
	requireNetns(t)
	for _, allow := range []bool{false, true} {
		t.Run(strconv.FormatBool(allow), func(t *testing.T) {
			m := &agenttest.Mapper{Delay: 2 * time.Second}
			r := start(t, agent.Config{Mapper: m, PreloadLib: shimLib(t), AllowDiscoveryPorts: allow},
				python(t), "-u", script(t, "sockets.py"), "udp4,0.0.0.0,5353", "udp6,::,1900", "tcp4,0.0.0.0,1900")
			began := time.Now()
			r.out.wait(t, `^READY \d+$`)
			if allow {
				r.waitOpen(t, "udp", 5353, true)
				r.waitOpen(t, "udp", 1900, true)
				return
			}
			// Mapped, the two discovery ports would add 2 s each to the
			// TCP port's 2 s.
			within(t, "binding two discovery ports and a TCP port", time.Since(began), 4500*time.Millisecond)
			r.waitOpen(t, "tcp", 1900, true)
			time.Sleep(quiet)
			if calls := r.m.Calls(); len(calls) != 1 {
				t.Errorf("calls %+v, want tcp/1900 only", calls)
			}
			log := r.log.String()
			for _, want := range []string{"level=INFO msg=\"not mapping socket\" proto=udp local=0.0.0.0:5353", "mDNS", "SSDP"} {
				if !strings.Contains(log, want) {
					t.Errorf("log lacks %q", want)
				}
			}
		})
	}
}

// A static Go binary ignores LD_PRELOAD; polling finds its sockets.
func TestStaticBinary(t *testing.T) {
	requireNetns(t)
	bin := goServer(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, bin)
	_, m := r.out.wait(t, `^READY (\d+)$`)
	r.waitOpen(t, "tcp", 23001, true)
	r.waitOpen(t, "udp", 23002, true)
	killed := kill(t, atoi(t, m[1]), syscall.SIGTERM)
	if code, err := r.result(t); code != 143 || err != nil {
		t.Errorf("Run = %d, %v", code, err)
	}
	for _, pp := range []struct {
		proto string
		port  uint16
	}{{"tcp", 23001}, {"udp", 23002}} {
		if r.m.Open(pp.proto, pp.port) != 0 {
			t.Errorf("%s/%d still open", pp.proto, pp.port)
		}
		within(t, "release after kill", r.lastCall(t, "release", pp.proto, pp.port).Sub(killed), releaseBound)
	}
}

// Without an agent the shim leaves the program alone, with one warning.
func TestShimWithoutAgent(t *testing.T) {
	requireNetns(t)
	lib, py := shimLib(t), python(t)
	ctx, cancel := context.WithTimeout(context.Background(), waitTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, "-u", script(t, "selfcheck.py"))
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib, agent.EnvAgentSock+"="+filepath.Join(t.TempDir(), "nobody-here.sock"))
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	began := time.Now()
	if err := cmd.Run(); err != nil {
		t.Fatalf("%v\nstdout: %s\nstderr: %s", err, &stdout, &stderr)
	}
	within(t, "the program", time.Since(began), 5*time.Second)
	if !strings.HasPrefix(stdout.String(), "OK ") {
		t.Errorf("stdout %q", &stdout)
	}
	if n := strings.Count(stderr.String(), "dpf-preload:"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, &stderr)
	}
	// A daemon whose fd 2 is a data file: the warning must not go there.
	f, err := os.Create(filepath.Join(t.TempDir(), "data"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd = exec.CommandContext(ctx, py, "-u", script(t, "selfcheck.py"))
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib, agent.EnvAgentSock+"="+filepath.Join(t.TempDir(), "nobody-here.sock"))
	stdout.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, f
	if err := cmd.Run(); err != nil || !strings.HasPrefix(stdout.String(), "OK ") {
		t.Errorf("stderr a file: %v, %q", err, &stdout)
	}
	if b, err := os.ReadFile(f.Name()); err != nil || len(b) != 0 {
		t.Errorf("the shim wrote to a regular file on fd 2: %q, %v", b, err)
	}
	// Without DPF_AGENT_SOCK the shim is silent.
	cmd = exec.CommandContext(ctx, py, "-u", script(t, "selfcheck.py"))
	cmd.Env = append(os.Environ(), "LD_PRELOAD="+lib)
	if out, err := cmd.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "OK ") {
		t.Errorf("without DPF_AGENT_SOCK: %v, %q", err, out)
	}
}

// When the router refuses, the program still works; the shim warns once
// and the agent keeps retrying while the socket exists.
func TestMapperFails(t *testing.T) {
	requireNetns(t)
	m := &agenttest.Mapper{Fail: func(string, uint16) error { return errors.New("no pinholes today") }}
	r := start(t, agent.Config{Mapper: m, PreloadLib: shimLib(t)}, python(t), "-u", script(t, "selfcheck.py"), "2.5")
	_, ok := r.out.wait(t, `^OK (\d+) (\d+)$`)
	tcp := port(t, ok[1])
	if code, err := r.result(t); code != 0 || err != nil {
		t.Errorf("Run = %d, %v", code, err)
	}
	if n := strings.Count(r.errOut.String(), "dpf-preload:"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, r.errOut)
	}
	if calls := m.CallsFor("tcp", tcp); len(calls) < 2 {
		t.Errorf("tcp/%d tried %d times, want a retry", tcp, len(calls))
	}
	var failures int
	for _, e := range r.eventList() {
		if !e.Opened || e.Err == nil {
			t.Errorf("event %+v", e)
		}
		failures++
	}
	if failures < 4 { // two TCP ports and one UDP port, plus retries
		t.Errorf("%d failure events", failures)
	}
}

// Loopback and IPv6-only sockets are not mapped, with or without the shim;
// dual-stack and host-address sockets are.
func TestWhatIsMapped(t *testing.T) {
	requireNetns(t)
	specs := []struct {
		spec string
		want bool
	}{
		{"tcp4,127.0.0.1,0", false},
		{"udp4,127.0.0.1,0", false},
		{"tcp6,::1,0", false},
		{"tcp6only,::,0", false},
		{"tcp6,::ffff:127.0.0.1,0", false},
		{"tcp6,::,0", true},
		{"tcp4," + lanAddr + ",0", true},
		{"udp6,::,21000", true}, // a fixed port: polling maps it too
	}
	for _, mode := range []string{"shim", "polling"} {
		t.Run(mode, func(t *testing.T) {
			cfg := agent.Config{}
			if mode == "shim" {
				cfg.PreloadLib = shimLib(t)
			}
			argv := []string{python(t), "-u", script(t, "sockets.py")}
			for _, s := range specs {
				argv = append(argv, s.spec)
			}
			// bind(port 0) on two different addresses may give both
			// sockets the same port (about 1 run in 750 here); the
			// checks below tell sockets apart by port, so such a run
			// is started again, at most twice.
			var r *run
			var ports map[string]uint16
			for attempt := 1; ; attempt++ {
				r = start(t, cfg, argv...)
				r.out.wait(t, `^READY \d+$`)
				ports = map[string]uint16{}
				seen := map[string]string{}
				clash := ""
				for i, s := range specs {
					_, m := r.out.wait(t, `^SOCK `+strconv.Itoa(i)+` (\d+)$`)
					ports[s.spec] = port(t, m[1])
					key := s.spec[:3] + "/" + m[1]
					if other, ok := seen[key]; ok {
						clash = other + " and " + s.spec + " share " + key
					}
					seen[key] = s.spec
				}
				if clash == "" {
					break
				}
				if attempt == 3 {
					t.Fatalf("three runs in a row with a shared port; last: %s", clash)
				}
				t.Logf("%s; starting again", clash)
				r.stop(t)
			}
			for _, s := range specs {
				if s.want {
					r.waitOpen(t, s.spec[:3], ports[s.spec], true)
				}
			}
			time.Sleep(quiet)
			for _, s := range specs {
				if !s.want && len(r.m.CallsFor(s.spec[:3], ports[s.spec])) != 0 {
					t.Errorf("%s (port %d) was mapped", s.spec, ports[s.spec])
				}
			}
			// The Mapper hears of a specific address, not of a wildcard.
			for _, c := range r.m.Calls() {
				want := ""
				if c.Port == ports["tcp4,"+lanAddr+",0"] {
					want = lanAddr
				}
				if got := c.Addr.String(); (want == "" && c.Addr.IsValid()) || (want != "" && got != want) {
					t.Errorf("call %+v: address %s, want %q", c, got, want)
				}
			}
			if !strings.Contains(r.log.String(), "IPv6-only") {
				t.Errorf("no log line about the IPv6-only socket")
			}
		})
	}
}

// Signals to the caller reach the program.
func TestForwardsSignals(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{}, "sh", "-c", "echo started; exec sleep 60")
	r.out.wait(t, `^started$`) // Run catches signals from before the start
	kill(t, os.Getpid(), syscall.SIGHUP)
	if code, err := r.result(t); code != 128+int(syscall.SIGHUP) || err != nil {
		t.Errorf("Run = %d, %v; want 129", code, err)
	}
}

// Cancelling the context stops a program that ignores SIGTERM with SIGKILL
// after the grace period, and releases its pinholes.
func TestCancel(t *testing.T) {
	requireNetns(t)
	r := start(t, agent.Config{PreloadLib: shimLib(t), KillGrace: 300 * time.Millisecond, PollInterval: time.Hour}, python(t), "-u", "-c",
		`import signal, socket, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
s = socket.socket(); s.bind(("0.0.0.0", 0)); s.listen()
print("PORT", s.getsockname()[1], flush=True)
time.sleep(60)`)
	_, m := r.out.wait(t, `^PORT (\d+)$`)
	p := port(t, m[1])
	r.waitOpen(t, "tcp", p, true)
	began := time.Now()
	r.cancel()
	code, err := r.result(t)
	if code != 128+int(syscall.SIGKILL) || !errors.Is(err, context.Canceled) {
		t.Errorf("Run = %d, %v; want 137, context.Canceled", code, err)
	}
	within(t, "stopping", time.Since(began), 3*time.Second) // the default grace would be 5 s
	if r.m.Open("tcp", p) != 0 {
		t.Error("pinhole left open")
	}
}

// A set-user-ID program gets a warning: the loader will not preload.
func TestSetuidWarning(t *testing.T) {
	requireNetns(t)
	bin := filepath.Join(t.TempDir(), "true")
	data, err := os.ReadFile(requireTool(t, "true"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(bin, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(bin, 0o755|os.ModeSetuid); err != nil {
		t.Fatal(err)
	}
	r := start(t, agent.Config{PreloadLib: shimLib(t)}, bin)
	r.result(t)
	if !strings.Contains(r.log.String(), "set-user-ID") {
		t.Errorf("no warning in the log:\n%s", r.log)
	}
}

func TestRunErrors(t *testing.T) {
	if code, err := agent.Run(context.Background(), agent.Config{}, []string{"true"}); err == nil || code != 126 {
		t.Errorf("no mapper: %d, %v", code, err)
	}
	cfg := agent.Config{Mapper: &agenttest.Mapper{}}
	if code, err := agent.Run(context.Background(), cfg, []string{"/nonexistent/program"}); err == nil || code != 127 {
		t.Errorf("missing program: %d, %v", code, err)
	}
	cfg.PreloadLib = "/nonexistent/lib.so"
	if code, err := agent.Run(context.Background(), cfg, []string{"true"}); err == nil || code != 126 {
		t.Errorf("missing library: %d, %v", code, err)
	}
}

// While the router is unreachable, listen() waits for it only the first
// time; later ones get their answer within a short bound, so a program
// that opens many sockets is not held up for MapTimeout each.
func TestUnreachableRouter(t *testing.T) {
	requireNetns(t)
	m := &agenttest.Mapper{Delay: 3 * time.Second, Fail: func(string, uint16) error {
		return fmt.Errorf("no answer from the gateway: %w", agent.ErrUnreachable)
	}}
	r := start(t, agent.Config{Mapper: m, PreloadLib: shimLib(t)}, python(t), "-u", "-c", `import socket, time
socks = []
for i in range(4):
    s = socket.socket(); s.bind(("0.0.0.0", 0))
    t = time.monotonic(); s.listen(); d = time.monotonic() - t
    socks.append(s)
    print("LISTEN", i, round(d, 3), flush=True)
time.sleep(60)`)
	for i := range 4 {
		_, lm := r.out.wait(t, `^LISTEN `+strconv.Itoa(i)+` ([\d.]+)$`)
		d, _ := strconv.ParseFloat(lm[1], 64)
		switch {
		case i == 0 && d < 2.7:
			t.Errorf("the first listen() took %vs; it should wait for the Map to fail (3 s)", d)
		case i > 0 && d > 1.5:
			t.Errorf("listen() %d took %vs after the router was found unreachable", i, d)
		}
	}
	if n := strings.Count(r.errOut.String(), "dpf-preload:"); n != 1 {
		t.Errorf("%d warnings, want 1:\n%s", n, r.errOut)
	}
}

// ^C on the terminal reaches the main process once: from the terminal
// when it is in the foreground process group, from Run when it left that
// group (setpgid) and the terminal's SIGINT reached Run alone.
func TestCtrlC(t *testing.T) {
	py := python(t)
	for _, tt := range []struct {
		name    string
		setpgid bool
	}{{"same group", false}, {"own group", true}} {
		t.Run(tt.name, func(t *testing.T) {
			code := `import os, signal, sys, time
got = 0
def on_int(sig, frame):
    global got
    got += 1
signal.signal(signal.SIGINT, on_int)
if sys.argv[1] == "1":
    os.setpgid(0, 0)
print("READY", os.getpid(), os.getpgrp(), flush=True)
while got == 0:
    time.sleep(0.05)
time.sleep(0.5)
print("GOT", got, flush=True)
sys.exit(40 + got)`
			setpgid := "0"
			if tt.setpgid {
				setpgid = "1"
			}
			p := startOnTerminal(t, py, "-u", "-c", code, setpgid)
			_, m := p.out.wait(t, `READY (\d+) (\d+)`)
			if tt.setpgid == (m[1] != m[2]) {
				t.Fatalf("the program's process group is %s, its pid %s", m[2], m[1])
			}
			if _, err := p.master.Write([]byte{3}); err != nil { // ^C
				t.Fatal(err)
			}
			select {
			case <-p.done:
			case <-time.After(5 * time.Second):
				kill(t, atoi(t, m[1]), syscall.SIGKILL)
				t.Fatalf("the program did not get SIGINT; output:\n%s", p.out)
			}
			if got := p.cmd.ProcessState.ExitCode(); got != 41 {
				t.Errorf("Run exited %d, want 41 (one SIGINT); output:\n%s", got, p.out)
			}
		})
	}
}
