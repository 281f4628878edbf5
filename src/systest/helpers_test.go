package systest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
)

// dpfdBin is built once by TestMain.
var dpfdBin string

func TestMain(m *testing.M) {
	if role := os.Getenv(roleEnv); role != "" {
		os.Exit(runRole(role))
	}
	os.Exit(func() int {
		dir, err := os.MkdirTemp("", "dpf-systest-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		dpfdBin = filepath.Join(dir, "dpfd")
		build := exec.Command("go", "build", "-o", dpfdBin, "github.com/dpf-router/dpf/src/cmd/dpfd")
		build.Stderr = os.Stderr
		if err := build.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "building dpfd:", err)
			return 1
		}
		if err := buildClientTools(dir); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		return m.Run()
	}())
}

// router is a lab with dpfd running in its router namespace.
type router struct {
	t       *testing.T
	lab     *lab.Lab
	dir     string
	cfgPath string
	backend string
	cmd     *exec.Cmd
	logBuf  *syncBuffer
}

var nsSeq int

// newRouter builds a lab for backend and writes dpfd's configuration; call
// start to run dpfd.
func newRouter(t *testing.T, backend string, lanHosts int) *router {
	t.Helper()
	nsSeq++
	prefix := fmt.Sprintf("dpfst%d-%s%d", os.Getpid()%100000, backend[:3], nsSeq)
	l, err := lab.New(prefix, lanHosts)
	if err != nil {
		t.Fatal(err)
	}
	r := &router{t: t, lab: l, dir: t.TempDir(), backend: backend}
	t.Cleanup(func() {
		if r.cmd != nil {
			lab.Stop(r.cmd, syscall.SIGTERM)
		}
		if t.Failed() {
			t.Logf("dpfd log:\n%s", r.logBuf.String())
			if out, err := l.Output(5*time.Second, l.Router, "nft", "list", "ruleset"); err == nil {
				t.Logf("router ruleset:\n%s", out)
			}
		}
		// Remove dpfd's rules from the router before the namespace
		// goes (nothing outside it is touched either way).
		l.Exec(l.Router, dpfdBin, "cleanup", "-c", r.cfgPath)
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	r.cfgPath = filepath.Join(r.dir, "dpf.conf")
	r.writeConfig("")
	return r
}

// writeConfig writes dpfd's configuration; extra is appended (rules).
func (r *router) writeConfig(extra string) {
	cfg := fmt.Sprintf(`config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend '%s'
	option db '%s'
	option socket '%s'
	option min_lifetime '2'
	option max_lifetime '3600'
	option max_per_host '6'
	option log_level 'debug'
%s`, r.backend, filepath.Join(r.dir, "leases.db"), filepath.Join(r.dir, "dpfd.sock"), extra)
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// start runs dpfd in the router and waits until it answers on its control
// socket.
func (r *router) start() {
	r.t.Helper()
	r.startWith()
}

// startWith is start with extra arguments for dpfd run.
func (r *router) startWith(extra ...string) {
	r.t.Helper()
	if r.logBuf == nil {
		r.logBuf = &syncBuffer{}
	}
	cmd := exec.Command(dpfdBin, append([]string{"run", "-c", r.cfgPath}, extra...)...)
	cmd.Stdout = r.logBuf
	cmd.Stderr = r.logBuf
	if err := r.lab.Start(r.lab.Router, cmd); err != nil {
		r.t.Fatal(err)
	}
	r.cmd = cmd
	deadline := time.Now().Add(15 * time.Second)
	for {
		var st control.Status
		err := control.Call(filepath.Join(r.dir, "dpfd.sock"), control.MethodStatus, nil, &st)
		if err == nil && len(st.Listening) > 0 {
			if st.Backend != r.backend {
				r.t.Fatalf("dpfd uses backend %s, want %s", st.Backend, r.backend)
			}
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("dpfd did not come up: %v\n%s", err, r.logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// kill stops dpfd with sig.
func (r *router) kill(sig syscall.Signal) {
	lab.Stop(r.cmd, sig)
	r.cmd = nil
}

// dpfd runs the dpfd CLI in the router namespace.
func (r *router) dpfd(args ...string) (string, error) {
	return r.lab.Output(20*time.Second, r.lab.Router, dpfdBin, append(args, "-c", r.cfgPath)...)
}

func (r *router) leases() []control.Lease {
	r.t.Helper()
	var ls []control.Lease
	if err := control.Call(filepath.Join(r.dir, "dpfd.sock"), control.MethodList, nil, &ls); err != nil {
		r.t.Fatalf("list: %v", err)
	}
	return ls
}

var mappedRE = regexp.MustCompile(`Mapped public port (\d+) protocol (TCP|UDP) to local port (\d+) li[f]?e?time (\d+)`)

// natpmpc runs Debian's natpmpc in LAN host n against the router and
// returns the mapped external port, or the tool's output as an error.
func (r *router) natpmpc(n int, args ...string) (uint16, string, error) {
	out, err := r.lab.Output(30*time.Second, r.lab.LAN[n], "natpmpc", append([]string{"-g", lab.RouterLAN.String()}, args...)...)
	m := mappedRE.FindStringSubmatch(out)
	if m == nil {
		if err == nil {
			err = errors.New("no mapping in output")
		}
		return 0, out, fmt.Errorf("natpmpc %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	p, _ := strconv.Atoi(m[1])
	return uint16(p), out, nil
}

// echoServers starts a TCP and a UDP echo server on port in LAN host n.
func (r *router) echoServers(n int, port uint16) {
	r.t.Helper()
	var ln net.Listener
	var pc net.PacketConn
	err := lab.In(r.lab.LAN[n], func() error {
		var err error
		addr := ":" + strconv.Itoa(int(port))
		if ln, err = net.Listen("tcp4", addr); err != nil {
			return err
		}
		pc, err = net.ListenPacket("udp4", addr)
		return err
	})
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { ln.Close(); pc.Close() })
	go echoStream(ln)
	go echoPackets(pc)
}

// echoStream echoes on every connection ln accepts (each for at most 5 s)
// until ln is closed.
func echoStream(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(c, c)
		}()
	}
}

// echoPackets sends every datagram back to its sender until pc is closed.
func echoPackets(pc net.PacketConn) {
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return
		}
		pc.WriteTo(buf[:n], from)
	}
}

// connTimeout bounds each probe through the router.
const connTimeout = 2 * time.Second

// reach tries a round trip from the internet host (source address src) to
// the router's WAN address on port, over proto.
func (r *router) reach(proto string, src netip.Addr, port uint16) error {
	return r.reachTo(proto, src, lab.RouterWAN, port)
}

// reachTo is reach to the router's external address dst; the zero src
// lets the kernel pick the source.
func (r *router) reachTo(proto string, src, dst netip.Addr, port uint16) error {
	to := netip.AddrPortFrom(dst, port).String()
	return lab.In(r.lab.Inet, func() error {
		d := net.Dialer{Timeout: connTimeout}
		switch {
		case !src.IsValid():
		case proto == "tcp":
			d.LocalAddr = &net.TCPAddr{IP: src.AsSlice()}
		default:
			d.LocalAddr = &net.UDPAddr{IP: src.AsSlice()}
		}
		c, err := d.Dial(proto+"4", to)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(connTimeout))
		msg := []byte("hello through the pinhole")
		if _, err := c.Write(msg); err != nil {
			return err
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(c, buf); err != nil {
			return err
		}
		if !bytes.Equal(buf, msg) {
			return fmt.Errorf("echo mismatch: %q", buf)
		}
		return nil
	})
}

func (r *router) mustReach(proto string, port uint16) {
	r.t.Helper()
	if err := r.reach(proto, lab.Inet, port); err != nil {
		r.t.Fatalf("%s port %d not reachable from the internet host: %v", proto, port, err)
	}
}

func (r *router) mustNotReach(proto string, port uint16) {
	r.t.Helper()
	if err := r.reach(proto, lab.Inet, port); err == nil {
		r.t.Fatalf("%s port %d still reachable from the internet host", proto, port)
	}
}

// eventuallyUnreachable waits (bounded) until port stops answering.
func (r *router) eventuallyUnreachable(proto string, port uint16, within time.Duration) {
	r.t.Helper()
	deadline := time.Now().Add(within)
	for {
		if err := r.reach(proto, lab.Inet, port); err != nil {
			return
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("%s port %d still reachable after %v", proto, port, within)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// udpExchange sends req from namespace ns to dst and returns the reply, or
// nil after wait.
func udpExchange(ns string, src netip.Addr, dst netip.AddrPort, req []byte, wait time.Duration) ([]byte, error) {
	var reply []byte
	err := lab.In(ns, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(wait))
		if _, err := c.Write(req); err != nil {
			return err
		}
		buf := make([]byte, 1500)
		n, err := c.Read(buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return nil
			}
			if errors.Is(err, syscall.ECONNREFUSED) {
				return nil
			}
			return err
		}
		reply = buf[:n]
		return nil
	})
	return reply, err
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	if s == nil {
		return ""
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
