package agent

import (
	"fmt"
	"net/netip"

	"github.com/dpf-router/dpf/client/internal/sockdiag"
)

// portKey is what a pinhole is for. Several sockets (SO_REUSEPORT workers,
// an IPv4 and a dual-stack socket) can share one.
type portKey struct {
	proto string // "tcp" or "udp"
	port  uint16
}

func (k portKey) String() string { return fmt.Sprintf("%s/%d", k.proto, k.port) }

// protoName returns "tcp" or "udp" for a sock_diag protocol number.
func protoName(p uint8) string {
	switch p {
	case sockdiag.ProtoTCP:
		return "tcp"
	case sockdiag.ProtoUDP:
		return "udp"
	}
	return fmt.Sprintf("proto%d", p)
}

// host is what decide needs to know about this machine.
type host struct {
	// isLocal reports whether a is an IPv4 address of one of this host's
	// interfaces. nil means none is.
	isLocal func(a netip.Addr) bool
	// ephemeral is the kernel's ip_local_port_range, inclusive.
	ephemeral [2]uint16
}

// Skip reasons that decide returns; v6Only is logged once per socket at
// info level, the rest at debug level.
const (
	reasonV6Only = "IPv6-only socket (IPV6_V6ONLY); DPF maps IPv4 only"
)

// decide says whether socket s gets a pinhole. announced is true when the
// shim reported the socket (the program called bind() for it), false when
// only polling found it. It returns the key to map, or a reason to skip.
//
// Mapped: TCP in LISTEN and unconnected UDP bound to 0.0.0.0, to a
// dual-stack [::], to ::ffff:a.b.c.d or to an IPv4 address of this host
// that is not loopback. Skipped: loopback, IPv6-only, other addresses, and
// UDP sockets that only polling found whose port lies in the ephemeral
// range: a client's sendto() binds such a socket implicitly, and nothing
// distinguishes it from a server that bound port 0.
func decide(s sockdiag.Socket, announced bool, h host) (portKey, string) {
	key := portKey{proto: protoName(s.Protocol), port: s.Local.Port()}
	switch {
	case s.Protocol == sockdiag.ProtoTCP && s.State != sockdiag.StateListen:
		return key, "TCP socket not listening"
	case s.Protocol == sockdiag.ProtoUDP && (s.State != sockdiag.StateClose || s.Remote.Port() != 0):
		return key, "connected UDP socket"
	case s.Protocol != sockdiag.ProtoTCP && s.Protocol != sockdiag.ProtoUDP:
		return key, "not TCP or UDP"
	case key.port == 0:
		return key, "no port"
	}
	a := s.Local.Addr()
	switch {
	case s.Family == sockdiag.AFInet6 && a.IsUnspecified():
		if s.HasV6Only && s.V6Only {
			return key, reasonV6Only
		}
	case a.Is4In6() || a.Is4():
		a = a.Unmap()
		switch {
		case a.IsUnspecified():
		case a.IsLoopback():
			return key, "bound to loopback"
		case a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}):
			return key, "bound to a multicast or broadcast address"
		case h.isLocal == nil || !h.isLocal(a):
			return key, fmt.Sprintf("bound to %s, not an address of this host", a)
		}
	case a.IsLoopback():
		return key, "bound to loopback"
	default:
		return key, fmt.Sprintf("bound to IPv6 address %s; DPF maps IPv4 only", a)
	}
	if key.proto == "udp" && !announced && key.port >= h.ephemeral[0] && key.port <= h.ephemeral[1] {
		return key, "UDP port in the ephemeral range, probably a client socket"
	}
	return key, ""
}
