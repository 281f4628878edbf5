// Package lab builds a small network out of Linux network namespaces for
// DPF's system tests and demo: an internet host, a router and LAN hosts.
//
//	inet  203.0.113.2/24, 203.0.113.3/24   (i0)
//	  |
//	router  wan0 203.0.113.1/24   br-lan 198.51.100.1/24
//	  |
//	lanN  198.51.100.(N+1)/24 (eth0), default route via 198.51.100.1
//
// Only documentation address ranges are used. Namespace names carry a
// unique prefix; Close deletes every namespace the lab made and stops every
// process it started, by PID.
package lab

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Addresses of the lab network.
var (
	RouterWAN = netip.MustParseAddr("203.0.113.1")
	RouterLAN = netip.MustParseAddr("198.51.100.1")
	Inet      = netip.MustParseAddr("203.0.113.2")
	Inet2     = netip.MustParseAddr("203.0.113.3")
	LANPrefix = netip.MustParsePrefix("198.51.100.0/24")
)

// LANHost returns the address of LAN host n (0-based).
func LANHost(n int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 51, 100, byte(n + 2)})
}

// Lab is a set of namespaces. Its methods are safe for concurrent use.
type Lab struct {
	Prefix string // unique namespace name prefix
	Router string // namespace names
	Inet   string
	LAN    []string

	mu    sync.Mutex
	procs []*exec.Cmd
	made  []string
}

// cmdTimeout bounds every set-up command.
const cmdTimeout = 20 * time.Second

// New builds a lab with lanHosts LAN hosts. Its namespaces are named
// prefix-router, prefix-inet, prefix-lanN. On error everything made so far is
// removed.
func New(prefix string, lanHosts int) (*Lab, error) {
	if lanHosts < 1 || lanHosts > 200 {
		return nil, fmt.Errorf("lanHosts %d out of range", lanHosts)
	}
	l := &Lab{Prefix: prefix, Router: prefix + "-router", Inet: prefix + "-inet"}
	for i := range lanHosts {
		l.LAN = append(l.LAN, fmt.Sprintf("%s-lan%d", prefix, i))
	}
	if err := l.build(); err != nil {
		l.Close()
		return nil, err
	}
	return l, nil
}

func (l *Lab) build() error {
	for _, ns := range append([]string{l.Router, l.Inet}, l.LAN...) {
		if err := run("ip", "netns", "add", ns); err != nil {
			return err
		}
		l.made = append(l.made, ns)
		if err := l.Exec(ns, "ip", "link", "set", "lo", "up"); err != nil {
			return err
		}
	}
	r, in := l.Router, l.Inet
	steps := [][]string{
		{"ip", "-n", r, "link", "add", "wan0", "type", "veth", "peer", "name", "i0", "netns", in},
		{"ip", "-n", r, "addr", "add", "203.0.113.1/24", "dev", "wan0"},
		{"ip", "-n", r, "link", "set", "wan0", "up"},
		{"ip", "-n", in, "addr", "add", "203.0.113.2/24", "dev", "i0"},
		{"ip", "-n", in, "addr", "add", "203.0.113.3/24", "dev", "i0"},
		{"ip", "-n", in, "link", "set", "i0", "up"},
		{"ip", "-n", r, "link", "add", "br-lan", "type", "bridge"},
		{"ip", "-n", r, "addr", "add", "198.51.100.1/24", "dev", "br-lan"},
		{"ip", "-n", r, "link", "set", "br-lan", "up"},
		{"ip", "netns", "exec", r, "sysctl", "-qw", "net.ipv4.ip_forward=1"},
	}
	for i, lan := range l.LAN {
		port := fmt.Sprintf("lan%d", i)
		steps = append(steps,
			[]string{"ip", "-n", r, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", lan},
			[]string{"ip", "-n", r, "link", "set", port, "master", "br-lan"},
			[]string{"ip", "-n", r, "link", "set", port, "up"},
			[]string{"ip", "-n", lan, "addr", "add", LANHost(i).String() + "/24", "dev", "eth0"},
			[]string{"ip", "-n", lan, "link", "set", "eth0", "up"},
			[]string{"ip", "-n", lan, "route", "add", "default", "via", "198.51.100.1"},
		)
	}
	for _, s := range steps {
		if err := run(s[0], s[1:]...); err != nil {
			return err
		}
	}
	// The bridge runs without STP, so its ports forward at once.
	return nil
}

func run(name string, args ...string) error {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Exec runs a command in namespace ns and waits for it (bounded).
func (l *Lab) Exec(ns string, name string, args ...string) error {
	return run("ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Output runs a command in ns and returns its combined output (bounded by
// timeout).
func (l *Lab) Output(timeout time.Duration, ns string, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...).CombinedOutput()
	return string(out), err
}

// Start starts a command in ns; Close stops it if it still runs.
func (l *Lab) Start(ns string, cmd *exec.Cmd) error {
	cmd.Args = append([]string{"ip", "netns", "exec", ns}, cmd.Args...)
	cmd.Path = "/usr/sbin/ip"
	if p, err := exec.LookPath("ip"); err == nil {
		cmd.Path = p
	}
	cmd.Err = nil
	if err := cmd.Start(); err != nil {
		return err
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return nil
}

// Stop signals a process Start started and waits for it (at most 5 s, then
// SIGKILL).
func Stop(cmd *exec.Cmd, sig syscall.Signal) error {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return nil
	}
	cmd.Process.Signal(sig)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return err
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		return <-done
	}
}

// In runs f with the calling goroutine's OS thread in namespace ns. Sockets
// f creates stay in ns after f returns.
func In(ns string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			errc <- err
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := f()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it dies with this goroutine
			// rather than return to the pool in the wrong namespace.
			errc <- errors.Join(ferr, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// Close stops the processes the lab started and deletes its namespaces.
func (l *Lab) Close() error {
	l.mu.Lock()
	procs := l.procs
	l.procs = nil
	l.mu.Unlock()
	for _, p := range procs {
		Stop(p, syscall.SIGTERM)
	}
	var errs []error
	for i := len(l.made) - 1; i >= 0; i-- {
		if err := run("ip", "netns", "del", l.made[i]); err != nil {
			errs = append(errs, err)
		}
	}
	l.made = nil
	return errors.Join(errs...)
}
