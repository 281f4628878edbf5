package systest

import (
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

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
)

// `dpf run` against the real dpfd: legacy programs that know nothing of
// DPF get a pinhole while they listen, and lose it when they stop or are
// killed. Dynamically linked programs go through the LD_PRELOAD shim (the
// pinhole exists when listen() returns); the statically linked Go server
// is found through sock_diag.

// leaseFor returns dpfd's lease for proto/extPort, if any.
func (r *router) leaseFor(proto string, extPort uint16) (control.Lease, bool) {
	for _, l := range r.leases() {
		if l.Proto == proto && l.ExternalPort == extPort {
			return l, true
		}
	}
	return control.Lease{}, false
}

// eventuallyNoLease waits (bounded) until dpfd holds no lease for
// proto/extPort.
func (r *router) eventuallyNoLease(proto string, extPort uint16, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if _, ok := r.leaseFor(proto, extPort); !ok {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("dpfd still holds %s/%d after %v: %+v", proto, extPort, within, r.leases())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// httpOK fetches / from the router's WAN address on port, from the
// internet host, and wants a 200 answer.
func (r *router) httpOK(port uint16) error {
	return lab.In(r.lab.Inet, func() error {
		c, err := net.DialTimeout("tcp4", fmt.Sprintf("%s:%d", lab.RouterWAN, port), connTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(connTimeout))
		fmt.Fprintf(c, "GET / HTTP/1.0\r\n\r\n")
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil {
			return err
		}
		if !strings.Contains(string(buf[:n]), " 200 ") {
			return fmt.Errorf("answer %q", buf[:n])
		}
		return nil
	})
}

// childPIDs returns the PIDs of pid's children.
func childPIDs(pid int) []int {
	var out []int
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	for _, f := range tasks {
		b, _ := os.ReadFile(f)
		for _, s := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// waitExit waits (bounded) for a `dpf run` to exit and returns its status.
func (p *dpfProc) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	deadline := time.Now().Add(within)
	for p.cmd.ProcessState == nil {
		if time.Now().After(deadline) {
			t.Fatalf("dpf run did not exit within %v:\n%s", within, p.out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p.cmd.ProcessState.ExitCode()
}

func TestDPFRun(t *testing.T) {
	needTools(t)
	for _, tool := range []string{"python3", "socat", "go"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it): %v", tool, err)
		}
	}
	testdata, err := filepath.Abs("testdata")
	if err != nil {
		t.Fatal(err)
	}
	r := newRouter(t, "nftables", 1)
	r.start()
	lan := r.lab.LAN[0]

	t.Run("python-http-server", func(t *testing.T) {
		www := t.TempDir()
		os.WriteFile(filepath.Join(www, "index.html"), []byte("hello\n"), 0o644)
		p := r.startDPF(lan, "run", "--", "python3", "-m", "http.server", "--directory", www, "--bind", "0.0.0.0", "8081")
		p.expect(t, "tcp port 8081 is reachable at "+lab.RouterWAN.String()+":8081", 30*time.Second)
		if l, ok := r.leaseFor("tcp", 8081); !ok || !strings.Contains(l.Description, "python3") {
			t.Fatalf("no lease for the server: %+v", r.leases())
		}
		if err := r.httpOK(8081); err != nil {
			t.Fatalf("http.server not reachable through its pinhole: %v", err)
		}
		// Kill the program itself (not dpf): the pinhole goes with it.
		kids := childPIDs(p.cmd.Process.Pid)
		if len(kids) != 1 {
			t.Fatalf("dpf run has children %v, want the python process", kids)
		}
		syscall.Kill(kids[0], syscall.SIGKILL)
		r.eventuallyNoLease("tcp", 8081, 5*time.Second)
		r.mustNotReach("tcp", 8081)
		if code := p.waitExit(t, 10*time.Second); code != 128+int(syscall.SIGKILL) {
			t.Fatalf("dpf run exited %d, want %d (the program's death by SIGKILL)", code, 128+int(syscall.SIGKILL))
		}
	})

	t.Run("socat-forking", func(t *testing.T) {
		// socat forks a child per connection; the listening socket
		// stays in the parent.
		p := r.startDPF(lan, "run", "--", "socat", "TCP4-LISTEN:8082,fork,reuseaddr", "EXEC:cat")
		p.expect(t, "tcp port 8082 is reachable", 30*time.Second)
		for i := 0; i < 3; i++ {
			r.mustReach("tcp", 8082)
		}
		p.cmd.Process.Signal(syscall.SIGTERM)
		p.expect(t, "tcp port 8082 closed", 10*time.Second)
		r.eventuallyNoLease("tcp", 8082, 5*time.Second)
		r.mustNotReach("tcp", 8082)
	})

	t.Run("prefork", func(t *testing.T) {
		pidfile := filepath.Join(t.TempDir(), "workers")
		p := r.startDPF(lan, "run", "--", "python3", filepath.Join(testdata, "prefork.py"), "8083", pidfile)
		p.expect(t, "tcp port 8083 is reachable", 30*time.Second)
		var workers []int
		deadline := time.Now().Add(10 * time.Second)
		for len(workers) == 0 {
			if b, err := os.ReadFile(pidfile); err == nil {
				for _, s := range strings.Fields(string(b)) {
					n, _ := strconv.Atoi(s)
					workers = append(workers, n)
				}
			}
			if time.Now().After(deadline) {
				t.Fatal("the pre-fork server wrote no worker PIDs")
			}
			time.Sleep(50 * time.Millisecond)
		}
		// The parent has exited; its workers hold the socket.
		time.Sleep(600 * time.Millisecond)
		r.mustReach("tcp", 8083)
		syscall.Kill(workers[0], syscall.SIGKILL)
		time.Sleep(600 * time.Millisecond)
		r.mustReach("tcp", 8083)
		if _, ok := r.leaseFor("tcp", 8083); !ok {
			t.Fatal("pinhole gone while a worker still holds the socket")
		}
		syscall.Kill(workers[1], syscall.SIGKILL)
		r.eventuallyNoLease("tcp", 8083, 5*time.Second)
		r.mustNotReach("tcp", 8083)
		p.waitExit(t, 10*time.Second)
	})

	t.Run("udp-bind", func(t *testing.T) {
		p := r.startDPF(lan, "run", "--", "python3", filepath.Join(testdata, "udpecho.py"), "8085")
		p.expect(t, "udp port 8085 is reachable", 30*time.Second)
		r.mustReach("udp", 8085)
		p.cmd.Process.Signal(syscall.SIGTERM)
		r.eventuallyNoLease("udp", 8085, 5*time.Second)
		r.mustNotReach("udp", 8085)
	})

	t.Run("static-go", func(t *testing.T) {
		bin := filepath.Join(t.TempDir(), "staticserver")
		build := exec.Command("go", "build", "-o", bin, "./testdata/staticserver")
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := build.CombinedOutput(); err != nil {
			t.Fatalf("building the static server: %v\n%s", err, out)
		}
		p := r.startDPF(lan, "run", "--", bin, "8084")
		p.expectAll(t, 30*time.Second, "tcp port 8084 is reachable", "udp port 8084 is reachable")
		r.mustReach("tcp", 8084)
		r.mustReach("udp", 8084)
		kids := childPIDs(p.cmd.Process.Pid)
		if len(kids) != 1 {
			t.Fatalf("dpf run has children %v, want the server", kids)
		}
		syscall.Kill(kids[0], syscall.SIGKILL)
		r.eventuallyNoLease("tcp", 8084, 5*time.Second)
		r.eventuallyNoLease("udp", 8084, 5*time.Second)
		r.mustNotReach("tcp", 8084)
		p.waitExit(t, 10*time.Second)
	})

	if ls := r.leases(); len(ls) != 0 {
		t.Fatalf("leases left after every program stopped: %+v", ls)
	}
}
