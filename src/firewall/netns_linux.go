package firewall

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// netnsDir is where "ip netns add" creates its namespace files.
const netnsDir = "/run/netns"

// openNetNS opens the named network namespace file for use with setns(2) or
// nftables.WithNetNSFd. The caller closes it.
func openNetNS(name string) (*os.File, error) {
	if name == "" || name != filepath.Base(name) || name == "." || name == ".." {
		return nil, fmt.Errorf("firewall: bad network namespace name %q", name)
	}
	f, err := os.Open(filepath.Join(netnsDir, name))
	if err != nil {
		return nil, fmt.Errorf("firewall: open network namespace: %w", err)
	}
	return f, nil
}

// inNetNS runs f in the named network namespace, or directly when name is
// empty. f runs on a fresh goroutine locked to its OS thread, which is moved
// into the namespace with setns(2); processes f starts (os/exec forks from
// the calling thread) inherit the namespace. The goroutine never unlocks the
// thread, so the runtime discards the thread when f returns instead of
// handing a thread in a foreign namespace to other goroutines.
func inNetNS(name string, f func() error) error {
	if name == "" {
		return f()
	}
	ns, err := openNetNS(name)
	if err != nil {
		return err
	}
	defer ns.Close()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// No UnlockOSThread, on purpose (see above).
		if err := unix.Setns(int(ns.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("firewall: setns %s: %w", name, err)
			return
		}
		errc <- f()
	}()
	return <-errc
}
