package sockdiag

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"
)

// recvTimeout bounds each read of a dump reply. The kernel answers from
// memory at once; this only guards against a reply that never comes.
const recvTimeout = 2 * time.Second

// recvBufSize is large enough for the kernel's dump batches (it fills up to
// about a page, or 32 KiB with a large enough buffer).
const recvBufSize = 64 << 10

var seqCounter atomic.Uint32

// Dump asks the kernel for every socket that matches req, in the network
// namespace of the calling thread. It opens and closes its own netlink
// socket, so it is safe for concurrent use.
func Dump(req Request) ([]Socket, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, unix.NETLINK_SOCK_DIAG)
	if err != nil {
		return nil, fmt.Errorf("sockdiag: netlink socket: %w", err)
	}
	defer unix.Close(fd)
	tv := unix.NsecToTimeval(int64(recvTimeout))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return nil, fmt.Errorf("sockdiag: SO_RCVTIMEO: %w", err)
	}
	seq := seqCounter.Add(1)
	if err := unix.Sendto(fd, req.Append(nil, seq), 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("sockdiag: send dump request: %w", err)
	}
	var all []Socket
	buf := make([]byte, recvBufSize)
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("sockdiag: receive dump: %w", err)
		}
		socks, done, err := ParseMessages(buf[:n], seq, req.Protocol)
		all = append(all, socks...)
		if err != nil {
			var errno Errno
			if errors.As(err, &errno) {
				return nil, fmt.Errorf("sockdiag: dump family %d protocol %d: %w", req.Family, req.Protocol, unix.Errno(errno))
			}
			return nil, err
		}
		if done {
			return all, nil
		}
	}
}
