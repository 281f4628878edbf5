package daemon

import (
	"log/slog"
	"net/netip"
	"sync/atomic"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/internal/ifaddr"
	"github.com/dpf-router/dpf/src/internal/listening"
	"github.com/dpf-router/dpf/src/policy"
)

// reservedPorts decides which external ports are never handed out, whatever
// the rules allow: those of option reserved_ports (replaced on reload), and
// those on which the router's own sockets listen, on the wildcard address
// or a WAN address (read from /proc/self/net at most once a second, when a
// port is being chosen). It is the lease Manager's Config.Reserved.
type reservedPorts struct {
	static atomic.Pointer[[]config.ReservedPort]
	live   *listening.Watcher
}

// newReservedPorts starts with the configured list; wan is the WAN
// interface and ext the current external address, whose sockets count
// besides the wildcard ones.
func newReservedPorts(list []config.ReservedPort, wan string, ext func() netip.Addr, log *slog.Logger) *reservedPorts {
	r := &reservedPorts{live: listening.New(listening.Config{
		Addrs:  func() []netip.Addr { return wanAddrs(wan, ext()) },
		Logger: log,
	})}
	r.set(list)
	return r
}

// set replaces the configured list (after a reload).
func (r *reservedPorts) set(list []config.ReservedPort) {
	r.static.Store(&list)
}

// reserved reports whether port of proto must not be handed out.
func (r *reservedPorts) reserved(proto firewall.Proto, port uint16) bool {
	for _, rp := range *r.static.Load() {
		if rp.Contains(policy.Proto(proto), port) {
			return true
		}
	}
	return r.live.Listening(proto, port)
}

// wanAddrs returns the addresses of the WAN interface and ext (when valid
// and not among them).
func wanAddrs(wan string, ext netip.Addr) []netip.Addr {
	var out []netip.Addr
	ps, _ := ifaddr.IPv4(wan) // a WAN that is down has no address to serve on
	for _, p := range ps {
		out = append(out, p.Addr())
	}
	if ext.IsValid() {
		out = append(out, ext.Unmap())
	}
	return out
}
