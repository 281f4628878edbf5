package lab

import (
	"encoding/binary"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// ctnetlink message numbers (linux/netfilter/nfnetlink.h and
// nfnetlink_conntrack.h): a delete with no tuple attributes empties the
// namespace's whole conntrack table for the family.
const (
	nfnlSubsysCTNetlink = 1
	ipctnlMsgCTDelete   = 2
	nfnetlinkV0         = 0
)

// ConntrackCount returns how many connections namespace ns's conntrack
// table holds, or an error when conntrack is not loaded there.
func ConntrackCount(ns string) (int, error) {
	var n int
	err := In(ns, func() error {
		b, err := os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_count")
		if err != nil {
			return err
		}
		n, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("conntrack count in %s: %w", ns, err)
	}
	return n, nil
}

// FlushConntrack empties namespace ns's IPv4 conntrack table, as
// `conntrack -F` would, so that connections of an earlier measurement do not
// weigh on the next one. It waits for the kernel's acknowledgement.
func FlushConntrack(ns string) error {
	err := In(ns, func() error {
		fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("netlink socket: %w", err)
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("netlink bind: %w", err)
		}
		tv := unix.Timeval{Sec: 5}
		if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
			return fmt.Errorf("netlink timeout: %w", err)
		}
		const seq = 1
		msg := make([]byte, unix.NLMSG_HDRLEN+4)
		binary.NativeEndian.PutUint32(msg[0:], uint32(len(msg)))
		binary.NativeEndian.PutUint16(msg[4:], nfnlSubsysCTNetlink<<8|ipctnlMsgCTDelete)
		binary.NativeEndian.PutUint16(msg[6:], unix.NLM_F_REQUEST|unix.NLM_F_ACK)
		binary.NativeEndian.PutUint32(msg[8:], seq)
		// struct nfgenmsg: family, version, resource id (big endian).
		msg[unix.NLMSG_HDRLEN] = unix.AF_INET
		msg[unix.NLMSG_HDRLEN+1] = nfnetlinkV0
		if err := unix.Sendto(fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
			return fmt.Errorf("netlink send: %w", err)
		}
		buf := make([]byte, 4096)
		// The answer is one NLMSG_ERROR; bound the reads in case other
		// messages come first.
		for range 8 {
			n, _, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				return fmt.Errorf("netlink receive: %w", err)
			}
			msgs, err := syscall.ParseNetlinkMessage(buf[:n])
			if err != nil {
				return fmt.Errorf("netlink answer: %w", err)
			}
			for _, m := range msgs {
				if m.Header.Seq != seq || m.Header.Type != unix.NLMSG_ERROR {
					continue
				}
				if len(m.Data) < 4 {
					return fmt.Errorf("netlink answer: short error message")
				}
				if code := int32(binary.NativeEndian.Uint32(m.Data)); code != 0 {
					return fmt.Errorf("conntrack flush: %w", unix.Errno(-code))
				}
				return nil
			}
		}
		return fmt.Errorf("conntrack flush: no acknowledgement")
	})
	if err != nil {
		return fmt.Errorf("in %s: %w", ns, err)
	}
	return nil
}
