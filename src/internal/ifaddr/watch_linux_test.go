//go:build linux

package ifaddr

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/testenv"
)

// cmdTimeout bounds each ip command; notifyWait how long a notification
// may take (the kernel sends it at once; this is slack for a loaded host).
const (
	cmdTimeout = 20 * time.Second
	notifyWait = 5 * time.Second
)

func ip(t *testing.T, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// watcherIn makes a Watcher in network namespace ns: the socket is created
// on a thread moved there, and stays there.
func watcherIn(t *testing.T, ns string) *Watcher {
	t.Helper()
	type result struct {
		w   *Watcher
		err error
	}
	c := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open("/run/netns/" + ns)
		if err != nil {
			c <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			c <- result{err: err}
			return
		}
		w, err := NewWatcher()
		c <- result{w, err}
	}()
	r := <-c
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.w
}

// TestWatcherKernel: adding and removing an address on a veth in a
// throwaway namespace is reported, with its interface and prefix; Run
// returns nil when its context ends.
func TestWatcherKernel(t *testing.T) {
	testenv.RequireRoot(t)
	ns := fmt.Sprintf("dpfifa-%d", os.Getpid())
	ip(t, "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip(t, "-n", ns, "link", "add", "wan0", "type", "veth", "peer", "name", "wanp")
	ip(t, "-n", ns, "link", "set", "wan0", "up")

	w := watcherIn(t, ns)
	changes := make(chan []Change, 16)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx, func(cs []Change) { changes <- cs }) }()

	expect := func(want Change) {
		t.Helper()
		timer := time.NewTimer(notifyWait)
		defer timer.Stop()
		for {
			select {
			case cs := <-changes:
				for _, c := range cs {
					if c.Deleted == want.Deleted && c.Label == want.Label && c.Prefix == want.Prefix && c.Index > 0 {
						return
					}
				}
				t.Logf("other changes: %+v", cs)
			case <-timer.C:
				t.Fatalf("no notification of %+v within %v", want, notifyWait)
			}
		}
	}
	ip(t, "-n", ns, "addr", "add", "203.0.113.1/24", "dev", "wan0")
	expect(Change{Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.1/24")})
	ip(t, "-n", ns, "addr", "add", "203.0.113.9/24", "dev", "wan0")
	expect(Change{Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.9/24")})
	ip(t, "-n", ns, "addr", "del", "203.0.113.9/24", "dev", "wan0")
	expect(Change{Deleted: true, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.9/24")})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(notifyWait):
		t.Fatal("Run did not return after cancel")
	}
}
