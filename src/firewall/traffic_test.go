//go:build linux

package firewall

// Real-traffic tests: an internet host connects through the router's
// pinhole to a server on the LAN host.

import (
	"testing"
)

func testTraffic(t *testing.T, kind string, setupRouter func(t *testing.T, ns string)) {
	tp := newTopology(t)
	if setupRouter != nil {
		setupRouter(t, tp.router)
	}
	startServer(t, tp.lan, "198.51.100.2:8000")
	b := newKernelBackend(t, kind, tp.router, "wan0")
	must(t, "Init", b.Init())
	t.Cleanup(func() { b.Cleanup() })

	const (
		inet1 = "203.0.113.2"
		inet2 = "203.0.113.3"
	)
	// Nothing answers on the router's WAN address before a pinhole exists.
	waitDial(t, tp, inet1, "203.0.113.1:8080", false)

	open := Pinhole{Proto: TCP, ExternalPort: 8080, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 8000}
	must(t, "Add", b.Add(open))
	waitDial(t, tp, inet1, "203.0.113.1:8080", true)
	waitDial(t, tp, inet2, "203.0.113.1:8080", true)

	filtered := Pinhole{Proto: TCP, ExternalPort: 9090, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 8000,
		Filters: []Filter{{Prefix: mustPrefix(inet1 + "/32")}}}
	must(t, "Add filtered", b.Add(filtered))
	waitDial(t, tp, inet1, "203.0.113.1:9090", true)
	waitDial(t, tp, inet2, "203.0.113.1:9090", false)
	// The unfiltered pinhole to the same internal port is unaffected.
	waitDial(t, tp, inet2, "203.0.113.1:8080", true)

	// A filter on the peer port: our dialer's ephemeral port is not 1.
	filtered.Filters = []Filter{{Prefix: mustPrefix(inet1 + "/32"), Port: 1}}
	must(t, "Add filtered by port", b.Add(filtered))
	waitDial(t, tp, inet1, "203.0.113.1:9090", false)

	must(t, "Remove", b.Remove(open.Key()))
	waitDial(t, tp, inet1, "203.0.113.1:8080", false)

	must(t, "Sync", b.Sync([]Pinhole{open}))
	waitDial(t, tp, inet1, "203.0.113.1:8080", true)
	waitDial(t, tp, inet1, "203.0.113.1:9090", false)
}

func TestNFTablesTraffic(t *testing.T) {
	testTraffic(t, KindNFTables, nil)
}

func TestIPTablesTraffic(t *testing.T) {
	testTraffic(t, KindIPTables, func(t *testing.T, ns string) {
		// A router firewall that drops forwarded traffic it has not
		// accepted: our FORWARD jump must come first.
		nsRun(t, ns, "iptables", "-P", "FORWARD", "DROP")
		nsRun(t, ns, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
		nsRun(t, ns, "iptables", "-A", "FORWARD", "-i", "wan0", "-j", "DROP")
	})
}
