//go:build linux

package firewall

// Netlink sockets for the generation id and the change notifications. They
// are raw NETLINK_NETFILTER sockets rather than google/nftables' Monitor:
// that one decodes every notification in full (10,000 set elements after
// each Sync at scale) and its event filter cannot select a subset.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// nfnlTimeout bounds a generation id request; the kernel answers from
// memory at once, so this only guards against an answer that never comes.
const nfnlTimeout = 2 * time.Second

// nfnlBufSize holds the largest datagram the kernel sends on these sockets
// (notifications are batched into skbs of at most about 8 kB; 64 kB leaves
// room should that grow).
const nfnlBufSize = 64 << 10

// watchRcvBuf is the receive buffer asked for the notification socket: a
// Sync of thousands of pinholes produces a burst of element notifications.
// Should it overflow anyway, Run reports a change and carries on.
const watchRcvBuf = 1 << 20

// nlSock is a netlink socket in the Go runtime's poller, so that reads
// honour deadlines and Close interrupts a blocked read.
type nlSock struct {
	f   *os.File
	rc  syscall.RawConn
	seq uint32
	buf []byte
}

// openNFNL opens a NETLINK_NETFILTER socket in network namespace netns (""
// for the current one) and joins it to groups.
func openNFNL(netns string, rcvBuf int, groups ...uint32) (*nlSock, error) {
	fd := -1
	err := inNetNS(netns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("firewall: netfilter netlink socket: %w", err)
	}
	setup := func() error {
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("bind: %w", err)
		}
		for _, g := range groups {
			if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, int(g)); err != nil {
				return fmt.Errorf("joining group %d: %w", g, err)
			}
		}
		if rcvBuf > 0 {
			// FORCE works for root (dpfd) beyond rmem_max; else
			// take what the limit allows.
			if unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBuf) != nil {
				unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBuf)
			}
		}
		return nil
	}
	if err := setup(); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("firewall: netfilter netlink socket: %w", err)
	}
	f := os.NewFile(uintptr(fd), "nfnetlink")
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("firewall: netfilter netlink socket: %w", err)
	}
	return &nlSock{f: f, rc: rc, buf: make([]byte, nfnlBufSize)}, nil
}

func (s *nlSock) Close() error { return s.f.Close() }

// recv reads one datagram into s.buf. It returns os.ErrDeadlineExceeded
// after a deadline, an error wrapping os.ErrClosed after Close, and
// unix.ENOBUFS when the kernel dropped messages for want of buffer space.
func (s *nlSock) recv() ([]byte, error) {
	var n int
	var rerr error
	err := s.rc.Read(func(fd uintptr) bool {
		for {
			n, _, rerr = unix.Recvfrom(int(fd), s.buf, 0)
			if rerr != unix.EINTR {
				return rerr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if rerr != nil {
		return nil, rerr
	}
	return s.buf[:n], nil
}

func (s *nlSock) send(b []byte) error {
	var serr error
	err := s.rc.Write(func(fd uintptr) bool {
		for {
			serr = unix.Sendto(int(fd), b, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
			if serr != unix.EINTR {
				return serr != unix.EAGAIN
			}
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// maxGenReplies bounds the datagrams read while waiting for one reply.
const maxGenReplies = 16

// generation asks for the ruleset generation id (NFT_MSG_GETGEN).
func (s *nlSock) generation() (uint32, error) {
	s.seq++
	seq := s.seq
	if err := s.send(appendGetGen(nil, seq, binary.NativeEndian)); err != nil {
		return 0, fmt.Errorf("firewall: nftables getgen: %w", err)
	}
	if err := s.f.SetReadDeadline(time.Now().Add(nfnlTimeout)); err != nil {
		return 0, fmt.Errorf("firewall: nftables getgen: %w", err)
	}
	for range maxGenReplies {
		b, err := s.recv()
		if err != nil {
			return 0, fmt.Errorf("firewall: nftables getgen: %w", err)
		}
		msgs, err := parseNFNL(b, binary.NativeEndian)
		if err != nil {
			return 0, fmt.Errorf("firewall: nftables getgen: %w", err)
		}
		for _, m := range msgs {
			switch {
			case m.Seq != seq:
			case m.Reply && m.Errno != 0:
				return 0, fmt.Errorf("firewall: nftables getgen: %w", unix.Errno(m.Errno))
			case m.Type == nftMsgNewGen && !m.Reply:
				return m.Gen, nil
			}
		}
	}
	return 0, errors.New("firewall: nftables getgen: no answer")
}

// genSource reads the ruleset generation id.
type genSource interface {
	read() (uint32, error)
	close()
}

// nftGen is the real genSource: a socket kept open between calls (opened
// again after an error). Not safe for concurrent use.
type nftGen struct {
	netns string
	s     *nlSock
}

func (g *nftGen) read() (uint32, error) {
	if g.s == nil {
		s, err := openNFNL(g.netns, 0)
		if err != nil {
			return 0, err
		}
		g.s = s
	}
	gen, err := g.s.generation()
	if err != nil {
		g.close()
	}
	return gen, err
}

func (g *nftGen) close() {
	if g.s != nil {
		g.s.Close()
		g.s = nil
	}
}

// nftWatcher is the Watcher of both backends: a socket in
// NFNLGRP_NFTABLES, and which tables matter.
type nftWatcher struct {
	s        *nlSock
	interest func(family uint8, table string) bool
	log      *slog.Logger
}

var _ Watcher = (*nftWatcher)(nil)

func newNFTWatcher(netns string, log *slog.Logger, interest func(family uint8, table string) bool) (*nftWatcher, error) {
	s, err := openNFNL(netns, watchRcvBuf, nfnlGroupNFTables)
	if err != nil {
		return nil, err
	}
	return &nftWatcher{s: s, interest: interest, log: log}, nil
}

func (w *nftWatcher) Close() error { return w.s.Close() }

func (w *nftWatcher) Run(ctx context.Context, changed func()) error {
	defer w.s.Close()
	stop := context.AfterFunc(ctx, func() { w.s.Close() })
	defer stop()
	for {
		b, err := w.s.recv()
		switch {
		case errors.Is(err, unix.ENOBUFS):
			// Notifications were lost; one of them may have been ours.
			w.log.Debug("firewall: change notifications lost (receive buffer full)")
			changed()
			continue
		case err != nil && ctx.Err() != nil:
			return nil
		case err != nil:
			return fmt.Errorf("firewall: reading nftables notifications: %w", err)
		}
		msgs, perr := parseNFNL(b, binary.NativeEndian)
		hit := perr != nil // unreadable: assume the worst
		for _, m := range msgs {
			if m.Overrun || (m.isRulesetChange() && w.interest(m.Family, m.Table)) {
				hit = true
				break
			}
		}
		if perr != nil {
			w.log.Debug("firewall: undecodable nftables notification", "err", perr)
		}
		if hit {
			changed()
		}
	}
}
