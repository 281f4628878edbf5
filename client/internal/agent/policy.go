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
	// addr is the zero Addr for a socket bound to a wildcard address
	// (0.0.0.0, [::], ::ffff:0.0.0.0), else the IPv4 address it is bound
	// to, unmapped: the router must forward to that address, which need
	// not be the host's primary one.
	addr netip.Addr
	port uint16
}

func (k portKey) String() string {
	if k.addr.IsValid() {
		return fmt.Sprintf("%s/%s", k.proto, netip.AddrPortFrom(k.addr, k.port))
	}
	return fmt.Sprintf("%s/%d", k.proto, k.port)
}

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

// host is what decide needs to know about this machine and the Run.
type host struct {
	// isLocal reports whether a is an IPv4 address of one of this host's
	// interfaces. nil means none is.
	isLocal func(a netip.Addr) bool
	// ephemeral is the kernel's ip_local_port_range, inclusive.
	ephemeral [2]uint16
	// allowDiscovery is Config.AllowDiscoveryPorts.
	allowDiscovery bool
}

// Skip reasons that decide returns; v6Only is logged once per socket at
// info level, discovery once per port at info level, the rest at debug
// level.
const (
	reasonV6Only    = "IPv6-only socket (IPV6_V6ONLY); DPF maps IPv4 only"
	reasonDiscovery = "LAN discovery port"
)

// discoveryProtocol names the LAN service discovery protocol that uses UDP
// port p, or returns "". These protocols answer small multicast or
// broadcast queries with large replies; exposed to the internet they make
// the host a UDP amplification reflector, and nothing outside the LAN has
// a use for them.
func discoveryProtocol(p uint16) string {
	switch p {
	case 137:
		return "NetBIOS name service" // RFC 1002
	case 138:
		return "NetBIOS datagram service" // RFC 1002
	case 1900:
		return "SSDP" // UPnP Device Architecture 2.0, section 1
	case 3702:
		return "WS-Discovery" // OASIS WS-Discovery 1.1, section 2.4
	case 5353:
		return "mDNS" // RFC 6762
	case 5355:
		return "LLMNR" // RFC 4795
	}
	return ""
}

// decide says whether socket s gets a pinhole. announced is true when the
// shim reported a bind() or listen() for the socket with a port the program
// chose, false when only polling found it or the program bound a UDP socket
// to port 0. It returns the key to map, or a reason to skip.
//
// Mapped: TCP in LISTEN and unconnected UDP bound to 0.0.0.0, to a
// dual-stack [::], to ::ffff:a.b.c.d or to an IPv4 address of this host
// that is not loopback. Skipped: loopback, IPv6-only, other addresses, UDP
// ports of LAN discovery protocols (unless h.allowDiscovery), and UDP
// sockets not announced whose port lies in the ephemeral range: a client's
// sendto() binds such a socket implicitly, and nothing distinguishes it
// from a server that bound port 0.
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
		default:
			key.addr = a
		}
	case a.IsLoopback():
		return key, "bound to loopback"
	default:
		return key, fmt.Sprintf("bound to IPv6 address %s; DPF maps IPv4 only", a)
	}
	if key.proto == "udp" && !h.allowDiscovery {
		if name := discoveryProtocol(key.port); name != "" {
			return key, fmt.Sprintf("%s (UDP %d, %s): not exposed to the internet, where it would make "+
				"an amplification reflector (dpf run --allow-discovery-ports maps it)", reasonDiscovery, key.port, name)
		}
	}
	if key.proto == "udp" && !announced && key.port >= h.ephemeral[0] && key.port <= h.ephemeral[1] {
		return key, "UDP port in the ephemeral range, probably a client socket"
	}
	return key, ""
}
