package lease_test

import (
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/policy"
)

// TestReservedPortsAreNeverGranted: with a rule allowing every port, the
// ports Config.Reserved names are neither granted as suggested, nor as the
// internal port, nor by the random search; PREFER_FAILURE fails.
func TestReservedPortsAreNeverGranted(t *testing.T) {
	// Everything except 22 and 443 (TCP) and 53 (UDP) is reserved in
	// 1-1023, so the random search has to skip reserved ports.
	reserved := func(proto firewall.Proto, port uint16) bool {
		switch {
		case port == 22 || port == 443:
			return proto == firewall.TCP
		case port == 53:
			return proto == firewall.UDP
		}
		return port >= 1000 && port <= 1023
	}
	r := newRig(t, func(c *lease.Config) {
		c.Reserved = reserved
		c.MaxPerHost, c.MaxLeases = 64, 64
		c.Policy = &policy.Policy{
			Rules:       []policy.Rule{{Action: policy.Allow, UseLAN: true, IntPorts: policy.AnyPorts, ExtPorts: policy.PortRange{First: 1, Last: 1023}}},
			LANPrefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		}
	})
	for i, req := range []lease.Request{
		natpmp(hostA, firewall.TCP, 22, 22, time.Minute),     // suggested and internal port reserved
		natpmp(hostA, firewall.TCP, 443, 0, time.Minute),     // internal port reserved, no suggestion
		natpmp(hostA, firewall.UDP, 53, 53, time.Minute),     // UDP
		natpmp(hostA, firewall.TCP, 1010, 1011, time.Minute), // both in the reserved block
	} {
		l, err := r.m.Map(req)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if reserved(l.Proto, l.ExternalPort) {
			t.Fatalf("request %d granted reserved port %s/%d", i, l.Proto, l.ExternalPort)
		}
	}
	// The same number in the other protocol is not reserved.
	if l, err := r.m.Map(natpmp(hostA, firewall.UDP, 22, 22, time.Minute)); err != nil || l.ExternalPort != 22 {
		t.Fatalf("udp/22: %v %v", l.ExternalPort, err)
	}
	req := pcp(hostB, 1, 8443, 443, time.Minute)
	req.PreferFailure = true
	if _, err := r.m.Map(req); !errors.Is(err, lease.ErrCannotProvideExternal) {
		t.Fatalf("PREFER_FAILURE on a reserved port: %v, want ErrCannotProvideExternal", err)
	}
	// Many more: the random search and the scan never land on one.
	for i := range 40 {
		l, err := r.m.Map(pcp(hostB, byte(i+2), uint16(2000+i), 0, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if reserved(l.Proto, l.ExternalPort) {
			t.Fatalf("granted reserved port %d", l.ExternalPort)
		}
	}
}

// TestReservedAllPortsIsNoResources: when every allowed port is reserved
// the request fails as if the range were full.
func TestReservedAllPortsIsNoResources(t *testing.T) {
	r := newRig(t, func(c *lease.Config) {
		c.Reserved = func(firewall.Proto, uint16) bool { return true }
	})
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 8080, time.Minute)); !errors.Is(err, lease.ErrNoResources) {
		t.Fatalf("err = %v, want ErrNoResources", err)
	}
}
