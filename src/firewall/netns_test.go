//go:build linux

package firewall

// Helpers for real-kernel tests: every test makes its own network
// namespaces ("ip netns add dpffw-PID-N") and deletes them in t.Cleanup.
// Only documentation address ranges are used.

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/testenv"
)

// cmdTimeout bounds every command a test runs (ip, nft, iptables-save).
const cmdTimeout = 20 * time.Second

var nsCounter atomic.Int64

// newNetNS creates a network namespace with lo up and returns its name.
func newNetNS(t testing.TB) string {
	t.Helper()
	testenv.RequireRoot(t)
	name := fmt.Sprintf("dpffw-%d-%d", os.Getpid(), nsCounter.Add(1))
	run(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := command("ip", "netns", "del", name); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	nsRun(t, name, "ip", "link", "set", "lo", "up")
	return name
}

func command(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}

// run runs a command and fails the test if it fails.
func run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := command(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// nsRun runs a command in network namespace ns.
func nsRun(t testing.TB, ns, name string, args ...string) string {
	t.Helper()
	return run(t, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// listenEnv makes the test binary, re-executed, serve TCP instead of
// running tests (see TestMain): it listens on the address in the variable
// and answers every connection with "hello\n".
const listenEnv = "DPF_FIREWALL_TEST_LISTEN"

func TestMain(m *testing.M) {
	if addr := os.Getenv(listenEnv); addr != "" {
		serve(addr)
		return
	}
	os.Exit(m.Run())
}

func serve(addr string) {
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("listening") // the parent waits for this line
	// The parent kills us by PID; as a safety net, exit on our own.
	time.AfterFunc(2*time.Minute, func() { os.Exit(0) })
	for {
		c, err := ln.Accept()
		if err != nil {
			os.Exit(1)
		}
		c.Write([]byte("hello\n"))
		c.Close()
	}
}

// startServer runs a TCP server in ns on addr and returns once it listens.
func startServer(t *testing.T, ns, addr string) {
	t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), listenEnv+"="+addr)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill() // "ip netns exec" execs, so this is the server
		cmd.Wait()
	})
	ready := make(chan bool, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line == "listening\n"
	}()
	select {
	case ok := <-ready:
		if !ok {
			t.Fatal("test server did not start")
		}
	case <-time.After(cmdTimeout):
		t.Fatal("test server did not start in time")
	}
}

// dialTimeout bounds each connection attempt in traffic tests.
const dialTimeout = 2 * time.Second

// dial connects from src (an address in ns) to dst and reads the
// greeting. It returns nil when the server answered.
func dial(ns, src, dst string) error {
	return inNetNS(ns, func() error {
		d := net.Dialer{Timeout: dialTimeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
		c, err := d.Dial("tcp4", dst)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(dialTimeout))
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil {
			return err
		}
		if line != "hello\n" {
			return fmt.Errorf("unexpected greeting %q", line)
		}
		return nil
	})
}

// topology is three namespaces: an internet host (203.0.113.2 and .3),
// a router (WAN 203.0.113.1 on "wan0", LAN 198.51.100.1 on "lan0",
// forwarding) and a LAN host (198.51.100.2, default route via the router).
type topology struct {
	inet, router, lan string
}

func newTopology(t *testing.T) topology {
	t.Helper()
	tp := topology{inet: newNetNS(t), router: newNetNS(t), lan: newNetNS(t)}
	run(t, "ip", "-n", tp.router, "link", "add", "wan0", "type", "veth", "peer", "name", "eth0", "netns", tp.inet)
	run(t, "ip", "-n", tp.router, "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", tp.lan)
	for _, c := range [][]string{
		{tp.inet, "addr", "add", "203.0.113.2/24", "dev", "eth0"},
		{tp.inet, "addr", "add", "203.0.113.3/24", "dev", "eth0"},
		{tp.inet, "link", "set", "eth0", "up"},
		{tp.router, "addr", "add", "203.0.113.1/24", "dev", "wan0"},
		{tp.router, "addr", "add", "198.51.100.1/24", "dev", "lan0"},
		{tp.router, "link", "set", "wan0", "up"},
		{tp.router, "link", "set", "lan0", "up"},
		{tp.lan, "addr", "add", "198.51.100.2/24", "dev", "eth0"},
		{tp.lan, "link", "set", "eth0", "up"},
		{tp.lan, "route", "add", "default", "via", "198.51.100.1"},
	} {
		run(t, "ip", append([]string{"-n", c[0]}, c[1:]...)...)
	}
	nsRun(t, tp.router, "sysctl", "-qw", "net.ipv4.ip_forward=1")
	return tp
}

// waitDial retries dial until it succeeds (want true) or fails (want
// false), a bounded number of times.
func waitDial(t *testing.T, tp topology, src, dst string, want bool) {
	t.Helper()
	var err error
	for range 3 {
		err = dial(tp.inet, src, dst)
		if (err == nil) == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	if want {
		t.Fatalf("%s -> %s: %v; want success", src, dst, err)
	}
	t.Fatalf("%s -> %s succeeded; want failure", src, dst)
}
