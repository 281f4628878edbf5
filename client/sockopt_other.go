//go:build !unix

package client

import "syscall"

// reuseAddrPort does nothing where SO_REUSEPORT is not available; the
// announcement socket then binds only if no other process holds the port.
func reuseAddrPort(_, _ string, _ syscall.RawConn) error { return nil }

// dualStack does nothing on systems without the unix socket options; a
// "tcp6" or "udp6" socket stays as Go makes it.
func dualStack(_, _ string, _ syscall.RawConn) error { return nil }
