//go:build linux

package ifaddr

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"golang.org/x/sys/unix"
)

// recvBufSize holds the largest notification datagram (the kernel sends
// address notifications one per datagram, under 200 bytes each).
const recvBufSize = 8 << 10

// Watcher follows the kernel's notifications of IPv4 address changes
// (rtnetlink group RTMGRP_IPV4_IFADDR) in the network namespace of the
// thread that made it.
type Watcher struct {
	f  *os.File
	rc syscall.RawConn
}

// NewWatcher subscribes to IPv4 address changes. The subscription is in
// place when it returns: no later change is missed (unless the reader falls
// so far behind that the kernel drops notifications, which Run reports).
func NewWatcher() (*Watcher, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("ifaddr: netlink socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK, Groups: unix.RTMGRP_IPV4_IFADDR}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("ifaddr: subscribing to address changes: %w", err)
	}
	// Non-blocking, so the file is in the runtime's poller and Close
	// interrupts a blocked read.
	f := os.NewFile(uintptr(fd), "rtnetlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("ifaddr: netlink socket: %w", err)
	}
	return &Watcher{f: f, rc: rc}, nil
}

// Close ends the subscription; a running Run returns.
func (w *Watcher) Close() error { return w.f.Close() }

// Run calls f with the changes of each notification until ctx is done, then
// returns nil; or it returns the error that stopped it. After notifications
// were lost (the socket's buffer overflowed) f is called with nil: read the
// addresses again. f runs on Run's goroutine and must not block. Run closes
// the Watcher when it returns; call it once.
func (w *Watcher) Run(ctx context.Context, f func([]Change)) error {
	defer w.f.Close()
	stop := context.AfterFunc(ctx, func() { w.f.Close() })
	defer stop()
	buf := make([]byte, recvBufSize)
	for {
		var n int
		var rerr error
		err := w.rc.Read(func(fd uintptr) bool {
			for {
				n, _, rerr = unix.Recvfrom(int(fd), buf, 0)
				if rerr != unix.EINTR {
					return rerr != unix.EAGAIN
				}
			}
		})
		if err == nil {
			err = rerr
		}
		switch {
		case errors.Is(err, unix.ENOBUFS):
			f(nil)
			continue
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("ifaddr: reading address changes: %w", err)
		}
		cs, lost, err := ParseMessages(buf[:n])
		if lost || err != nil {
			f(nil) // unreadable or lost: read the addresses again
			continue
		}
		if len(cs) > 0 {
			f(cs)
		}
	}
}
