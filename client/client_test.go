package client

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

var loopback = netip.MustParseAddr("127.0.0.1")

func TestProtocolString(t *testing.T) {
	for p, want := range map[Protocol]string{TCP: "tcp", UDP: "udp", 132: "proto(132)"} {
		if got := p.String(); got != want {
			t.Errorf("Protocol(%d).String() = %q, want %q", uint8(p), got, want)
		}
	}
}

func TestMapPCP(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.Description = "test server"
	c := newTestClient(t, cfg)
	before := time.Now()
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 8080})

	if got := m.External(); got != ext(8080) {
		t.Errorf("External = %v, want %v", got, ext(8080))
	}
	if got := m.Internal(); got != netip.AddrPortFrom(loopback, 8080) {
		t.Errorf("Internal = %v, want 127.0.0.1:8080", got)
	}
	if m.Protocol() != TCP {
		t.Errorf("Protocol = %v", m.Protocol())
	}
	if exp := m.Expiry(); exp.Before(before.Add(DefaultLifetime)) || exp.After(time.Now().Add(DefaultLifetime)) {
		t.Errorf("Expiry = %v, want two hours from now", exp)
	}
	if p, err := c.Protocol(t.Context()); err != nil || p != PCP {
		t.Errorf("Protocol = %q, %v; want PCP", p, err)
	}
	reqs := g.requests()
	if len(reqs) != 1 {
		t.Fatalf("%d requests, want 1", len(reqs))
	}
	r := reqs[0]
	if !r.pcp || r.op != pcp.OpMap || r.proto != uint8(TCP) || r.internal != 8080 || r.suggested != 8080 ||
		r.lifetime != 7200 || r.desc != "test server" || r.suggAddr != netip.IPv4Unspecified() {
		t.Errorf("request %+v", r)
	}
	// The client address is the request socket's local address (RFC 6887
	// section 8.1), here the loopback address toward the fake gateway.
	if r.clientAddr != loopback || r.src.Addr() != loopback {
		t.Errorf("client address %v from %v, want 127.0.0.1", r.clientAddr, r.src)
	}
	if r.nonce == ([12]byte{}) {
		t.Error("zero nonce")
	}
	m2 := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 8080, Lifetime: 90 * time.Second, Description: "other"})
	r2 := g.requests()[1]
	if r2.nonce == r.nonce {
		t.Error("two mappings share a nonce")
	}
	if r2.proto != uint8(UDP) || r2.lifetime != 90 || r2.desc != "other" {
		t.Errorf("second request %+v", r2)
	}
	_ = m2
}

func TestRetransmit(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.drop = 2 })
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 5353})
	if m.External() != ext(5353) {
		t.Errorf("External = %v", m.External())
	}
	reqs := g.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (two dropped)", len(reqs))
	}
	for i, r := range reqs {
		// Retransmissions are the same request from the same socket.
		if r.nonce != reqs[0].nonce || r.src != reqs[0].src || r.internal != 5353 {
			t.Errorf("request %d differs: %+v vs %+v", i, r, reqs[0])
		}
	}
}

func TestIgnoresMismatchedResponses(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.bogus = []string{"nonce", "proto", "port", "op"} })
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 2222})
	// Each bogus answer offered external port 1; only the matching one
	// may be taken.
	if m.External() != ext(2222) {
		t.Fatalf("External = %v, want %v: a mismatched response was accepted", m.External(), ext(2222))
	}
	if n := len(g.requests()); n != 1 {
		t.Errorf("%d requests; the right answer came with the first", n)
	}

	g2 := newTestGW(t)
	g2.set(func(g *fakeGW) { g.bogus = []string{"port"} })
	cfg := testConfig(t, g2)
	cfg.Force = "natpmp"
	c2 := newTestClient(t, cfg)
	m2 := mustMap(t, c2, MapRequest{Protocol: TCP, InternalPort: 2222})
	if m2.External() != ext(2222) {
		t.Fatalf("NAT-PMP External = %v, want %v", m2.External(), ext(2222))
	}
}

func TestGrantedPortUsed(t *testing.T) {
	for _, force := range []string{"pcp", "natpmp"} {
		t.Run(force, func(t *testing.T) {
			g := newTestGW(t)
			g.set(func(g *fakeGW) { g.shift = 1000 })
			cfg := testConfig(t, g)
			cfg.Force = force
			c := newTestClient(t, cfg)
			m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 8080, SuggestedExternalPort: 9000})
			if m.External() != ext(10000) {
				t.Fatalf("External = %v, want the granted %v", m.External(), ext(10000))
			}
			if r := g.requests(); r[len(r)-1].suggested != 9000 {
				t.Errorf("suggested %d, want 9000", r[len(r)-1].suggested)
			}
			// A renewal suggests the granted port.
			if err := m.Renew(t.Context()); err != nil {
				t.Fatal(err)
			}
			if r := g.requests(); r[len(r)-1].suggested != 10000 {
				t.Errorf("renewal suggested %d, want the granted 10000", r[len(r)-1].suggested)
			}
			expectEvents(t, m, Renewed)
		})
	}
}

func TestNATPMPFallback(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.natpmpOnly = true })
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 6000})
	if m.External() != ext(6000) {
		t.Errorf("External = %v", m.External())
	}
	if p, err := c.Protocol(t.Context()); err != nil || p != NATPMP {
		t.Errorf("Protocol = %q, %v; want NAT-PMP", p, err)
	}
	reqs := g.requests()
	if len(reqs) != 3 || !reqs[0].pcp || reqs[1].pcp || reqs[1].op != natpmp.OpPublicAddress ||
		reqs[2].pcp || reqs[2].op != natpmp.OpMapUDP || reqs[2].lifetime != 7200 {
		t.Fatalf("requests %+v; want PCP MAP, NAT-PMP public address, NAT-PMP map", reqs)
	}
	// The choice is remembered: no more PCP.
	mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 6001})
	for _, r := range g.requests()[3:] {
		if r.pcp {
			t.Fatalf("PCP request after the fallback: %+v", r)
		}
	}
	// Protocol probes with ANNOUNCE on a fresh client.
	c2 := newTestClient(t, testConfig(t, g))
	if p, err := c2.Protocol(t.Context()); err != nil || p != NATPMP {
		t.Errorf("probed Protocol = %q, %v; want NAT-PMP", p, err)
	}
	g2 := newTestGW(t)
	c3 := newTestClient(t, testConfig(t, g2))
	if p, err := c3.Protocol(t.Context()); err != nil || p != PCP {
		t.Errorf("probed Protocol = %q, %v; want PCP", p, err)
	}
	if r := g2.requests(); len(r) != 1 || r[0].op != pcp.OpAnnounce {
		t.Errorf("probe requests %+v; want one ANNOUNCE", r)
	}
}

func TestForce(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.Force = "NATPMP"
	c := newTestClient(t, cfg)
	mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 7000})
	for _, r := range g.requests() {
		if r.pcp {
			t.Fatalf("PCP request with Force natpmp: %+v", r)
		}
	}

	g2 := newTestGW(t)
	g2.set(func(g *fakeGW) { g.natpmpOnly = true })
	cfg = testConfig(t, g2)
	cfg.Force = "pcp"
	c2 := newTestClient(t, cfg)
	_, err := c2.Map(t.Context(), MapRequest{Protocol: TCP, InternalPort: 7000})
	var re *ResultError
	if !errors.As(err, &re) || re.Code != pcp.ResultUnsuppVersion {
		t.Fatalf("Map with Force pcp on a NAT-PMP gateway = %v; want UNSUPP_VERSION", err)
	}
	for _, r := range g2.requests() {
		if !r.pcp {
			t.Fatalf("NAT-PMP request with Force pcp: %+v", r)
		}
	}
}

func TestAutomaticRenewal(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.maxLife = 1 })
	c := newTestClient(t, testConfig(t, g))
	start := time.Now()
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 3000})
	ev := expectEvents(t, m, Renewed)[0]
	// Granted 1 s: renewal between 0.5 s and 0.625 s (plus scheduling).
	if d := time.Since(start); d < 500*time.Millisecond || d > 5*time.Second {
		t.Errorf("renewed after %v, want about 0.5-0.625 s", d)
	}
	if ev.External != ext(3000) || ev.Err != nil {
		t.Errorf("event %+v", ev)
	}
	reqs := g.requests()
	if len(reqs) < 2 || reqs[1].nonce != reqs[0].nonce || reqs[1].suggested != 3000 {
		t.Errorf("renewal request %+v; want the same nonce and the granted port", reqs)
	}
}

func TestRenewalRefused(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.maxLife = 1 })
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 3001})
	g.set(func(g *fakeGW) { g.refusePCP = pcp.ResultNotAuthorized })
	ev := expectEvents(t, m, Lost)[0]
	if !errors.Is(ev.Err, ErrNotAuthorized) || ev.External != ext(3001) {
		t.Fatalf("Lost event %+v; want ErrNotAuthorized for %v", ev, ext(3001))
	}
	if m.External().IsValid() || !errors.Is(m.Err(), ErrNotAuthorized) {
		t.Errorf("while lost: External %v, Err %v", m.External(), m.Err())
	}
	g.set(func(g *fakeGW) { g.refusePCP = 0 })
	ev = expectEvents(t, m, Restored)[0]
	if ev.External != ext(3001) || m.External() != ext(3001) || m.Err() != nil {
		t.Fatalf("Restored event %+v, External %v, Err %v", ev, m.External(), m.Err())
	}
	nonces := map[[12]byte]bool{}
	for _, r := range g.requests() {
		nonces[r.nonce] = true
	}
	if len(nonces) != 1 {
		t.Errorf("%d nonces used; one mapping keeps one nonce", len(nonces))
	}
}

func TestRenewalTransientFailureUntilExpiry(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.maxLife = 1 })
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 3002})
	expiry := m.Expiry()
	g.set(func(g *fakeGW) { g.refusePCP = pcp.ResultNoResources })
	ev := expectEvents(t, m, Lost)[0]
	// NO_RESOURCES is a short-lifetime error: retried until expiry, only
	// then reported.
	if ev.Time.Before(expiry) || !errors.Is(ev.Err, ErrNoResources) {
		t.Errorf("Lost at %v (expiry %v) with %v; want at or after expiry, ErrNoResources", ev.Time, expiry, ev.Err)
	}
	if n := len(g.requests()); n < 3 {
		t.Errorf("%d requests; want retries before expiry", n)
	}
	g.set(func(g *fakeGW) { g.refusePCP = 0 })
	expectEvents(t, m, Restored)
}

func TestEpochLossDetectedByRenewal(t *testing.T) {
	g := newTestGW(t)
	c := newTestClient(t, testConfig(t, g))
	a := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4001})
	b := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 4002})
	g.restart()
	if g.has(uint8(UDP), 4002) {
		t.Fatal("restart kept the mapping")
	}
	// A's renewal gets epoch 0 after 1000+: state loss. A itself was just
	// re-created by that request; B is re-created after the jitter.
	if err := a.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, a, Restored)
	evs := expectEvents(t, b, Lost, Restored)
	if !errors.Is(evs[0].Err, ErrStateLost) || evs[1].External != ext(4002) {
		t.Errorf("events %+v", evs)
	}
	if !g.has(uint8(UDP), 4002) {
		t.Error("B not re-created at the gateway")
	}
}

func TestEpochLossNATPMP(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.Force = "natpmp"
	c := newTestClient(t, cfg)
	a := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4011})
	b := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4012})
	g.restart()
	if err := a.Renew(t.Context()); err != nil {
		t.Fatal(err)
	}
	expectEvents(t, a, Restored)
	expectEvents(t, b, Lost, Restored)
	if !g.has(uint8(TCP), 4012) {
		t.Error("B not re-created at the gateway")
	}
}

func TestAnnounce(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.DisableAnnounce = false
	cfg.AnnounceAddr = netip.MustParseAddrPort("127.0.0.1:0")
	c := newTestClient(t, cfg)
	a := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4101})
	b := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 4102})
	to := c.announceAddr()
	if !to.IsValid() {
		t.Fatal("announcement listener not started")
	}

	// An ANNOUNCE whose epoch continues (a restart that kept its state,
	// or a repeat) changes nothing.
	if err := g.announce(to); err != nil {
		t.Fatal(err)
	}
	noEvent(t, a, 200*time.Millisecond)
	if n := len(g.requests()); n != 2 {
		t.Errorf("%d requests after a harmless ANNOUNCE, want 2", n)
	}

	// From another address: ignored, even after a real restart.
	g.restart()
	other, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 2)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	msg := pcp.Response{Op: pcp.OpAnnounce}.AppendTo(nil)
	if _, err := other.WriteToUDPAddrPort(msg, to); err != nil {
		t.Fatal(err)
	}
	noEvent(t, b, 200*time.Millisecond)

	// From the gateway after the restart: both re-created.
	if err := g.announce(to); err != nil {
		t.Fatal(err)
	}
	for _, m := range []*Mapping{a, b} {
		evs := expectEvents(t, m, Lost, Restored)
		if !errors.Is(evs[0].Err, ErrStateLost) {
			t.Errorf("Lost error %v, want ErrStateLost", evs[0].Err)
		}
	}
	if !g.has(uint8(TCP), 4101) || !g.has(uint8(UDP), 4102) {
		t.Error("mappings not re-created at the gateway")
	}
}

func TestNATPMPAddressNotice(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.Force = "natpmp"
	cfg.DisableAnnounce = false
	cfg.AnnounceAddr = netip.MustParseAddrPort("127.0.0.1:0")
	c := newTestClient(t, cfg)
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4201})
	newExt := netip.MustParseAddr("198.51.100.9")
	g.set(func(g *fakeGW) { g.ext = newExt })
	if err := g.notice(c.announceAddr()); err != nil {
		t.Fatal(err)
	}
	ev := expectEvents(t, m, Changed)[0]
	if ev.External != netip.AddrPortFrom(newExt, 4201) || m.External() != ev.External {
		t.Errorf("Changed to %v (External %v), want %v:4201", ev.External, m.External(), newExt)
	}
	if a, err := c.ExternalAddr(t.Context()); err != nil || a != newExt {
		t.Errorf("ExternalAddr = %v, %v", a, err)
	}
}

func TestAnnounceBindFailureNotFatal(t *testing.T) {
	g := newTestGW(t)
	busy, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close() // bound without SO_REUSEADDR: the client cannot share it
	cfg := testConfig(t, g)
	cfg.DisableAnnounce = false
	cfg.AnnounceAddr = busy.LocalAddr().(*net.UDPAddr).AddrPort()
	c := newTestClient(t, cfg)
	mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 4301})
	if c.announceAddr().IsValid() {
		t.Error("listener bound a busy port")
	}
}

func TestRelease(t *testing.T) {
	for _, force := range []string{"pcp", "natpmp"} {
		t.Run(force, func(t *testing.T) {
			g := newTestGW(t)
			cfg := testConfig(t, g)
			cfg.Force = force
			c := newTestClient(t, cfg)
			m := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 5001})
			if err := m.Release(t.Context()); err != nil {
				t.Fatal(err)
			}
			reqs := g.requests()
			del := reqs[len(reqs)-1]
			if del.lifetime != 0 || del.internal != 5001 || del.suggested != 0 || del.proto != uint8(UDP) {
				t.Errorf("delete request %+v", del)
			}
			if force == "pcp" && (del.nonce != reqs[0].nonce || del.suggAddr != netip.IPv6Unspecified()) {
				t.Errorf("PCP delete: nonce %x (want %x), address %v (want all zero)", del.nonce, reqs[0].nonce, del.suggAddr)
			}
			if g.has(uint8(UDP), 5001) {
				t.Error("mapping still at the gateway")
			}
			ev := expectEvents(t, m, Released)[0]
			if ev.Err != nil || ev.External != ext(5001) {
				t.Errorf("Released event %+v", ev)
			}
			if _, ok := <-m.Events(); ok {
				t.Error("events not closed after Released")
			}
			if err := m.Release(t.Context()); err != nil {
				t.Errorf("second Release = %v", err)
			}
			if err := m.Renew(t.Context()); !errors.Is(err, ErrClosed) {
				t.Errorf("Renew after Release = %v; want ErrClosed", err)
			}
			if m.External().IsValid() {
				t.Errorf("External after Release = %v", m.External())
			}
			if n := len(g.requests()); n != len(reqs) {
				t.Errorf("requests after Release: %d, want %d", n, len(reqs))
			}
		})
	}
}

func TestCloseReleasesAll(t *testing.T) {
	g := newTestGW(t)
	c := newTestClient(t, testConfig(t, g))
	ms := []*Mapping{
		mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 5101}),
		mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 5102}),
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	if g.has(uint8(TCP), 5101) || g.has(uint8(UDP), 5102) {
		t.Error("mappings left at the gateway")
	}
	for _, m := range ms {
		expectEvents(t, m, Released)
		if _, ok := <-m.Events(); ok {
			t.Error("events not closed")
		}
	}
	if err := c.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

func TestCloseBoundedWhenGatewayGone(t *testing.T) {
	g := newTestGW(t)
	c := newTestClient(t, testConfig(t, g))
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 5201})
	g.set(func(g *fakeGW) { g.silent = true })
	start := time.Now()
	err := c.Close()
	if d := time.Since(start); d > c.releaseTimeout+time.Second {
		t.Errorf("Close took %v with release timeout %v", d, c.releaseTimeout)
	}
	if !errors.Is(err, ErrGatewayUnreachable) {
		t.Errorf("Close = %v; want ErrGatewayUnreachable", err)
	}
	ev := expectEvents(t, m, Released)[0]
	if !errors.Is(ev.Err, ErrGatewayUnreachable) {
		t.Errorf("Released error %v", ev.Err)
	}
}

func TestExternalAddr(t *testing.T) {
	t.Run("PCP probe", func(t *testing.T) {
		g := newTestGW(t)
		c := newTestClient(t, testConfig(t, g))
		a, err := c.ExternalAddr(t.Context())
		if err != nil || a != fakeExternal {
			t.Fatalf("ExternalAddr = %v, %v", a, err)
		}
		reqs := g.requests()
		// ANNOUNCE probe, MAP, delete.
		if len(reqs) != 3 || reqs[1].op != pcp.OpMap || reqs[1].lifetime != probeLifetime ||
			reqs[2].lifetime != 0 || reqs[2].nonce != reqs[1].nonce {
			t.Fatalf("requests %+v", reqs)
		}
		if g.has(uint8(UDP), reqs[1].internal) {
			t.Error("probe mapping left at the gateway")
		}
		// With a live mapping, no probe.
		mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 5301})
		n := len(g.requests())
		if a, err := c.ExternalAddr(t.Context()); err != nil || a != fakeExternal {
			t.Fatalf("ExternalAddr = %v, %v", a, err)
		}
		if len(g.requests()) != n {
			t.Error("probe sent despite a live mapping")
		}
	})
	t.Run("NAT-PMP", func(t *testing.T) {
		g := newTestGW(t)
		g.set(func(g *fakeGW) { g.natpmpOnly = true })
		c := newTestClient(t, testConfig(t, g))
		a, err := c.ExternalAddr(t.Context())
		if err != nil || a != fakeExternal {
			t.Fatalf("ExternalAddr = %v, %v", a, err)
		}
		if r := g.requests(); r[len(r)-1].pcp || r[len(r)-1].op != natpmp.OpPublicAddress {
			t.Errorf("last request %+v; want NAT-PMP public address", r[len(r)-1])
		}
	})
}

func TestMapValidation(t *testing.T) {
	g := newTestGW(t)
	c := newTestClient(t, testConfig(t, g))
	if _, err := c.Map(t.Context(), MapRequest{Protocol: 132, InternalPort: 80}); !errors.Is(err, ErrUnsupportedProtocol) {
		t.Errorf("SCTP: %v", err)
	}
	if _, err := c.Map(t.Context(), MapRequest{Protocol: TCP}); err == nil {
		t.Error("internal port 0 accepted")
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("%d requests for invalid mappings", n)
	}
}

func TestEventsDropOldest(t *testing.T) {
	c := newTestClient(t, Config{})
	m, err := c.newMapping(MapRequest{Protocol: TCP, InternalPort: 1})
	if err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	for i := range eventBuffer + 5 {
		m.external = netip.AddrPortFrom(fakeExternal, uint16(i))
		m.emitLocked(Renewed, nil)
	}
	m.mu.Unlock()
	for i := 5; i < eventBuffer+5; i++ {
		if ev := <-m.events; ev.External.Port() != uint16(i) {
			t.Fatalf("event port %d, want %d (oldest dropped first)", ev.External.Port(), i)
		}
	}
	select {
	case ev := <-m.events:
		t.Fatalf("extra event %+v", ev)
	default:
	}
}

func TestPCPUnsuppVersion(t *testing.T) {
	natpmpAnswer := natpmp.Response{Op: 1, Result: natpmp.ResultUnsupportedVersion}.AppendTo(nil)
	pcpHeader := pcp.AppendErrorResponse(nil, nil, pcp.ResultUnsuppVersion, 0, 0)
	v1 := bytes.Clone(pcpHeader)
	v1[0] = 1
	tests := []struct {
		name string
		b    []byte
		want bool
	}{
		{"NAT-PMP 16-byte answer", natpmpAnswer, true},
		{"NAT-PMP 8-byte answer", natpmpAnswer[:8], true},
		{"NAT-PMP 4 bytes", natpmpAnswer[:4], false},
		{"NAT-PMP other result", natpmp.Response{Op: 1, Result: natpmp.ResultNotAuthorized}.AppendTo(nil), false},
		{"PCP UNSUPP_VERSION", pcpHeader, true},
		{"PCP version 1 server", v1, true},
		{"PCP success", pcp.Response{Op: pcp.OpAnnounce}.AppendTo(nil), false},
		{"empty", nil, false},
	}
	for _, tt := range tests {
		if got := pcpUnsuppVersion(tt.b); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}
