//go:build unix

package client

import (
	"syscall"

	"golang.org/x/sys/unix"
)

// reuseAddrPort is a net.ListenConfig Control function that sets
// SO_REUSEADDR and SO_REUSEPORT, so that every process on the host can bind
// the announcement port and each gets a copy of the multicast datagrams.
func reuseAddrPort(_, _ string, c syscall.RawConn) error {
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
		if serr == nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
		}
	})
	if err != nil {
		return err
	}
	return serr
}

// dualStack is a net.ListenConfig Control function that clears IPV6_V6ONLY
// on "tcp6" and "udp6" sockets, which Go makes IPv6-only when bound to the
// unspecified address, so that the socket also accepts the IPv4 traffic the
// gateway forwards.
func dualStack(network, _ string, c syscall.RawConn) error {
	if network != "tcp6" && network != "udp6" {
		return nil
	}
	var serr error
	err := c.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	})
	if err != nil {
		return err
	}
	return serr
}
