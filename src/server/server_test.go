package server

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock/clocktest"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
	"github.com/dpf-router/dpf/src/policy"
)

var (
	wanAddr = netip.MustParseAddr("203.0.113.1")
	hostA   = netip.MustParseAddrPort("198.51.100.10:40000")
	hostB   = netip.MustParseAddrPort("198.51.100.11:40000")
	t0      = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
)

type rig struct {
	s   *Server
	m   *lease.Manager
	fw  *leasetest.Firewall
	clk *clocktest.Fake
	ext netip.Addr
}

func newRig(t *testing.T) *rig {
	t.Helper()
	r := &rig{fw: leasetest.NewFirewall(), clk: clocktest.NewFake(t0), ext: wanAddr}
	r.m = lease.New(lease.Config{
		MinLifetime: 120 * time.Second,
		MaxLifetime: 24 * time.Hour,
		MaxPerHost:  3,
		Policy: &policy.Policy{
			Rules: []policy.Rule{{Action: policy.Allow, UseLAN: true,
				IntPorts: policy.PortRange{First: 1024, Last: 65535}, ExtPorts: policy.PortRange{First: 1024, Last: 65535}}},
			LANPrefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		},
		Clock:    r.clk,
		Firewall: r.fw,
		Store:    leasetest.NewStore(),
	})
	r.s = New(Config{Manager: r.m, Clock: r.clk, ExternalAddr: func() netip.Addr { return r.ext }, RateLimit: 1000, RateBurst: 1000})
	return r
}

func (r *rig) natpmp(t *testing.T, src netip.AddrPort, req natpmp.Request) natpmp.Response {
	t.Helper()
	b := r.s.Handle(req.AppendTo(nil), src)
	if b == nil {
		t.Fatalf("no response to %+v", req)
	}
	resp, err := natpmp.ParseResponse(b)
	if err != nil {
		t.Fatalf("bad response %x: %v", b, err)
	}
	return resp
}

func TestNATPMPPublicAddress(t *testing.T) {
	r := newRig(t)
	r.clk.Advance(42 * time.Second)
	resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpPublicAddress})
	if resp.Result != natpmp.ResultSuccess || resp.ExternalAddr != wanAddr || resp.Epoch != 42 {
		t.Fatalf("%+v", resp)
	}
	r.ext = netip.Addr{}
	if b := r.s.Handle([]byte{0, 0}, hostA); len(b) != 12 || binary.BigEndian.Uint16(b[2:]) != natpmp.ResultNetworkFailure {
		t.Fatalf("WAN down: %x", b)
	}
}

func TestNATPMPMapRenewDelete(t *testing.T) {
	r := newRig(t)
	// What `natpmpc -a 8080 8080 tcp 3600` sends.
	pkt := []byte{0x00, 0x02, 0x00, 0x00, 0x1f, 0x90, 0x1f, 0x90, 0x00, 0x00, 0x0e, 0x10}
	b := r.s.Handle(pkt, hostA)
	resp, err := natpmp.ParseResponse(b)
	if err != nil || len(b) != 16 {
		t.Fatalf("%x %v", b, err)
	}
	if resp.Op != natpmp.OpMapTCP || resp.Result != 0 || resp.InternalPort != 8080 || resp.ExternalPort != 8080 || resp.Lifetime != 3600 {
		t.Fatalf("%+v", resp)
	}
	// Another host asking for the same external port gets another one.
	resp = r.natpmp(t, hostB, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600})
	if resp.Result != 0 || resp.ExternalPort == 8080 || resp.ExternalPort < 1024 {
		t.Fatalf("second host: %+v", resp)
	}
	// UDP mapping, then delete-all UDP.
	resp = r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 5000, Lifetime: 60})
	if resp.Result != 0 || resp.Lifetime != 120 { // clamped to min_lifetime
		t.Fatalf("udp: %+v", resp)
	}
	resp = r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapUDP})
	if resp.Result != 0 {
		t.Fatalf("delete all: %+v", resp)
	}
	if _, ok := r.fw.Get(firewall.Key{Proto: firewall.UDP, ExternalPort: 5000}); ok {
		t.Fatal("udp pinhole survived delete-all")
	}
	// Delete the TCP one.
	resp = r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080})
	if resp.Result != 0 || resp.ExternalPort != 0 || resp.Lifetime != 0 {
		t.Fatalf("delete: %+v", resp)
	}
	if r.m.Len() != 1 {
		t.Fatalf("%d leases left, want hostB's", r.m.Len())
	}
}

func TestNATPMPErrorsAreFullSize(t *testing.T) {
	r := newRig(t)
	cases := []struct {
		name   string
		pkt    []byte
		size   int
		result uint16
	}{
		{"port 80 refused by policy", natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 80, SuggestedExternalPort: 80, Lifetime: 60}.AppendTo(nil), 16, natpmp.ResultNotAuthorized},
		{"unsupported opcode", []byte{0, 9}, 16, natpmp.ResultUnsupportedOpcode},
	}
	for _, c := range cases {
		b := r.s.Handle(c.pkt, hostA)
		if len(b) != c.size || binary.BigEndian.Uint16(b[2:]) != c.result || b[1] != c.pkt[1]|0x80 {
			t.Errorf("%s: %x", c.name, b)
		}
	}
	for _, drop := range [][]byte{{0}, {0, 0x82}, {0, 2, 0}} {
		if b := r.s.Handle(drop, hostA); b != nil {
			t.Errorf("%x answered with %x", drop, b)
		}
	}
}

func TestNATPMPQuota(t *testing.T) {
	r := newRig(t)
	for i := range 3 {
		if resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: uint16(2000 + i), Lifetime: 600}); resp.Result != 0 {
			t.Fatal(resp)
		}
	}
	if resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 3000, Lifetime: 600}); resp.Result != natpmp.ResultOutOfResources {
		t.Fatalf("over quota: %+v", resp)
	}
}

func pcpMap(client netip.Addr, nonce byte, proto uint8, in, ext uint16, life uint32, opts ...pcp.Option) []byte {
	req := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: life, ClientAddr: client,
		Map: pcp.MapData{Protocol: proto, InternalPort: in, ExternalPort: ext}, Options: opts}
	req.Map.Nonce[11] = nonce
	return req.AppendTo(nil)
}

func (r *rig) pcp(t *testing.T, src netip.AddrPort, pkt []byte) pcp.Response {
	t.Helper()
	b := r.s.Handle(pkt, src)
	if b == nil {
		t.Fatalf("no response")
	}
	resp, err := pcp.ParseResponse(b)
	if err != nil {
		t.Fatalf("bad response %x: %v", b, err)
	}
	return resp
}

func TestPCPMap(t *testing.T) {
	r := newRig(t)
	resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 8080, 3600, pcp.DescriptionOption("web")))
	if resp.Result != 0 || resp.Map.ExternalPort != 8080 || resp.Map.ExternalAddr != wanAddr || resp.Lifetime != 3600 || resp.Map.Nonce[11] != 1 {
		t.Fatalf("%+v", resp)
	}
	if len(resp.Options) != 1 || resp.Options[0].Code != pcp.OptDescription {
		t.Fatalf("options not echoed: %+v", resp.Options)
	}
	l, _ := r.m.Get(firewall.Key{Proto: firewall.TCP, ExternalPort: 8080})
	if l.Description != "web" {
		t.Fatalf("description %q", l.Description)
	}
	// Wrong nonce: NOT_AUTHORIZED with a long error lifetime.
	resp = r.pcp(t, hostA, pcpMap(hostA.Addr(), 2, 6, 8080, 8080, 3600))
	if resp.Result != pcp.ResultNotAuthorized || resp.Lifetime != longErrorLifetime {
		t.Fatalf("wrong nonce: %+v", resp)
	}
	resp = r.pcp(t, hostA, pcpMap(hostA.Addr(), 2, 6, 8080, 0, 0))
	if resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("wrong nonce delete: %+v", resp)
	}
	// Right nonce deletes.
	resp = r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 0, 0))
	if resp.Result != 0 || resp.Lifetime != 0 || r.m.Len() != 0 {
		t.Fatalf("delete: %+v, %d leases", resp, r.m.Len())
	}
}

func TestPCPFilterAndPreferFailure(t *testing.T) {
	r := newRig(t)
	f := pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: 0})
	resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 17, 9000, 9000, 600, f))
	if resp.Result != 0 {
		t.Fatalf("%+v", resp)
	}
	p, _ := r.fw.Get(firewall.Key{Proto: firewall.UDP, ExternalPort: 9000})
	if len(p.Filters) != 1 || p.Filters[0].Prefix.String() != "203.0.113.0/24" {
		t.Fatalf("pinhole filters %+v", p.Filters)
	}
	resp = r.pcp(t, hostB, pcpMap(hostB.Addr(), 1, 17, 9000, 9000, 600, pcp.PreferFailureOption()))
	if resp.Result != pcp.ResultCannotProvideExternal {
		t.Fatalf("prefer failure: %+v", resp)
	}
}

func TestPCPErrors(t *testing.T) {
	r := newRig(t)
	// Client address field is not the source.
	resp := r.pcp(t, hostA, pcpMap(hostB.Addr(), 1, 6, 8080, 0, 600))
	if resp.Result != pcp.ResultAddressMismatch || resp.Lifetime != longErrorLifetime {
		t.Fatalf("mismatch: %+v", resp)
	}
	// Version 1 gets UNSUPP_VERSION in a version 2 response.
	pkt := pcpMap(hostA.Addr(), 1, 6, 8080, 0, 600)
	pkt[0] = 1
	b := r.s.Handle(pkt, hostA)
	if len(b) < 24 || b[0] != pcp.Version || b[3] != pcp.ResultUnsuppVersion {
		t.Fatalf("version 1: %x", b)
	}
	// Response bit set: dropped.
	pkt = pcpMap(hostA.Addr(), 1, 6, 8080, 0, 600)
	pkt[1] |= 0x80
	if b := r.s.Handle(pkt, hostA); b != nil {
		t.Fatalf("response answered: %x", b)
	}
	// Protocol other than TCP/UDP, and a port the policy refuses.
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 132, 8080, 0, 600)); resp.Result != pcp.ResultUnsuppProtocol {
		t.Fatalf("sctp: %+v", resp)
	}
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 22, 22, 600)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("port 22: %+v", resp)
	}
	// THIRD_PARTY is refused by the default policy.
	tp := pcp.ThirdPartyOption(hostB.Addr())
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 0, 600, tp)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("third party: %+v", resp)
	}
	// Unknown mandatory option.
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 0, 600, pcp.Option{Code: 99})); resp.Result != pcp.ResultUnsuppOption {
		t.Fatalf("mandatory option: %+v", resp)
	}
	// Unknown optional option is ignored.
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 0, 600, pcp.Option{Code: 200, Data: []byte{1}})); resp.Result != 0 {
		t.Fatalf("optional option: %+v", resp)
	}
	// WAN down: short error.
	r.ext = netip.Addr{}
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 3, 6, 8081, 0, 600)); resp.Result != pcp.ResultNetworkFailure || resp.Lifetime != shortErrorLifetime {
		t.Fatalf("wan down: %+v", resp)
	}
	if r.m.Len() != 1 {
		t.Fatalf("%d leases", r.m.Len())
	}
}

func TestPCPAnnounceAndEpoch(t *testing.T) {
	r := newRig(t)
	r.s.cfg.EpochBase = 1000
	r.clk.Advance(5 * time.Second)
	req := pcp.Request{Version: pcp.Version, Op: pcp.OpAnnounce, ClientAddr: hostA.Addr()}
	resp := r.pcp(t, hostA, req.AppendTo(nil))
	if resp.Result != 0 || resp.Op != pcp.OpAnnounce || resp.Epoch != 1005 {
		t.Fatalf("%+v", resp)
	}
}

func TestRateLimit(t *testing.T) {
	r := newRig(t)
	r.s.limiter = newLimiter(1, 5)
	answered := 0
	for range 20 {
		if r.s.Handle([]byte{0, 0}, hostA) != nil {
			answered++
		}
	}
	if answered != 5 {
		t.Fatalf("answered %d of a burst of 20, want 5", answered)
	}
	// Another host is not affected.
	if r.s.Handle([]byte{0, 0}, hostB) == nil {
		t.Fatal("other host starved")
	}
	r.clk.Advance(2 * time.Second)
	if r.s.Handle([]byte{0, 0}, hostA) == nil {
		t.Fatal("no token after refill")
	}
	if st := r.s.Stats(); st.RateLimited != 15 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPCPFilterPrefixZeroClears(t *testing.T) {
	r := newRig(t)
	f := pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("203.0.113.0/24")})
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 9000, 9000, 600, f)); resp.Result != 0 {
		t.Fatalf("%+v", resp)
	}
	// A renewal with FILTER prefix length 0 removes every filter.
	clear := pcp.Option{Code: pcp.OptFilter, Data: make([]byte, 20)}
	if resp := r.pcp(t, hostA, pcpMap(hostA.Addr(), 1, 6, 9000, 9000, 600, clear)); resp.Result != 0 {
		t.Fatalf("clearing filters: %+v", resp)
	}
	if p, _ := r.fw.Get(firewall.Key{Proto: firewall.TCP, ExternalPort: 9000}); len(p.Filters) != 0 {
		t.Fatalf("filters left: %+v", p.Filters)
	}
}

func TestAnnounceMessages(t *testing.T) {
	r := newRig(t)
	r.clk.Advance(7 * time.Second)
	msgs := r.s.announceMessages()
	if len(msgs) != 2 {
		t.Fatalf("%d messages, want PCP and NAT-PMP", len(msgs))
	}
	pr, err := pcp.ParseResponse(msgs[0])
	if err != nil || pr.Op != pcp.OpAnnounce || pr.Result != pcp.ResultSuccess || pr.Epoch != 7 || pr.Lifetime != 0 {
		t.Fatalf("PCP ANNOUNCE %x: %+v %v", msgs[0], pr, err)
	}
	nr, err := natpmp.ParseResponse(msgs[1])
	if err != nil || nr.Op != natpmp.OpPublicAddress || nr.ExternalAddr != wanAddr || nr.Epoch != 7 {
		t.Fatalf("NAT-PMP notice %x: %+v %v", msgs[1], nr, err)
	}
	// WAN down: no address to announce, but PCP still announces.
	r.ext = netip.Addr{}
	if msgs := r.s.announceMessages(); len(msgs) != 1 {
		t.Fatalf("WAN down: %d messages, want only the PCP ANNOUNCE", len(msgs))
	}
	if got := r.s.announceTo(""); got.IsValid() {
		t.Fatalf("extra listen sockets must not announce, got %s", got)
	}
	if got := r.s.announceTo("br-lan"); got != DefaultAnnounceAddr {
		t.Fatalf("announceTo = %s", got)
	}
}
