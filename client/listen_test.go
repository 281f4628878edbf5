package client

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"testing"

	"github.com/dpf-router/dpf/src/pcp"
)

func TestListenLoopbackRefused(t *testing.T) {
	g := newTestGW(t)
	for _, tt := range []struct{ network, addr string }{
		{"tcp", "127.0.0.1:0"}, {"tcp4", "127.0.0.2:0"}, {"tcp6", "[::1]:0"},
	} {
		ln, err := Listen(t.Context(), tt.network, tt.addr, WithConfig(testConfig(t, g)))
		if tt.network == "tcp6" && err != nil && !errors.Is(err, ErrUnmappable) {
			t.Logf("no IPv6 loopback here: %v", err)
			continue
		}
		if !errors.Is(err, ErrUnmappable) {
			if ln != nil {
				ln.Close()
			}
			t.Errorf("Listen(%s, %s) = %v; want ErrUnmappable", tt.network, tt.addr, err)
		}
	}
	pc, err := ListenPacket(t.Context(), "udp", "127.0.0.1:0", WithConfig(testConfig(t, g)))
	if !errors.Is(err, ErrUnmappable) {
		if pc != nil {
			pc.Close()
		}
		t.Errorf("ListenPacket on loopback = %v; want ErrUnmappable", err)
	}
	if _, err := Listen(t.Context(), "udp", "0.0.0.0:0"); err == nil {
		t.Error("Listen accepted network udp")
	}
	if n := len(g.requests()); n != 0 {
		t.Errorf("%d requests for loopback sockets", n)
	}
}

func TestListen(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.shift = 7 })
	ln, err := Listen(t.Context(), "tcp4", "0.0.0.0:0", WithConfig(testConfig(t, g)), WithDescription("web"))
	if err != nil {
		t.Fatal(err)
	}
	local := ln.Addr().(*net.TCPAddr).AddrPort()
	if !local.Addr().IsUnspecified() {
		t.Errorf("Addr = %v; want the local (unspecified) address", local)
	}
	if got, want := ln.PublicAddr(), ext(local.Port()+7); got != want {
		t.Errorf("PublicAddr = %v, want the granted %v", got, want)
	}
	if ln.Err() != nil || ln.Mapping().Protocol() != TCP {
		t.Errorf("Err %v, Protocol %v", ln.Err(), ln.Mapping().Protocol())
	}
	r := g.requests()[0]
	if r.internal != local.Port() || r.suggested != local.Port() || r.desc != "web" || r.proto != uint8(TCP) {
		t.Errorf("request %+v; want internal and suggested port %d", r, local.Port())
	}

	// The socket works as a plain listener.
	go func() {
		c, err := net.Dial("tcp", netip.AddrPortFrom(loopback, local.Port()).String())
		if err == nil {
			c.Write([]byte("hi"))
			c.Close()
		}
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(conn)
	conn.Close()
	if string(b) != "hi" {
		t.Errorf("read %q", b)
	}

	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	if g.has(uint8(TCP), local.Port()) {
		t.Error("mapping left at the gateway after Close")
	}
	if err := ln.Close(); err != nil {
		t.Errorf("second Close = %v", err)
	}
	if _, err := ln.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("Accept after Close = %v", err)
	}
}

func TestListenPacket(t *testing.T) {
	g := newTestGW(t)
	cfg := testConfig(t, g)
	cfg.Force = "natpmp"
	c := newTestClient(t, cfg)
	pc, err := ListenPacket(t.Context(), "udp4", ":0", WithClient(c), WithExternalPort(40000))
	if err != nil {
		t.Fatal(err)
	}
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	if pc.PublicAddr() != ext(40000) {
		t.Errorf("PublicAddr = %v, want %v", pc.PublicAddr(), ext(40000))
	}
	if m := pc.Mapping(); m.Internal() != netip.AddrPortFrom(loopback, local.Port()) {
		t.Errorf("Internal = %v", m.Internal())
	}
	if err := pc.Close(); err != nil {
		t.Fatal(err)
	}
	if g.has(uint8(UDP), local.Port()) {
		t.Error("mapping left at the gateway after Close")
	}
	// WithClient: the shared client stays open.
	if _, err := c.Map(t.Context(), MapRequest{Protocol: UDP, InternalPort: 9}); err != nil {
		t.Errorf("shared client closed with the socket: %v", err)
	}
}

func TestListenRefused(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.refusePCP = pcp.ResultNotAuthorized })
	// Find a free port, so that we can check the socket was closed.
	probe, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := probe.Addr().String()
	probe.Close()
	_, err = Listen(t.Context(), "tcp4", addr, WithConfig(testConfig(t, g)))
	if !errors.Is(err, ErrNotAuthorized) {
		t.Fatalf("Listen = %v; want ErrNotAuthorized", err)
	}
	again, err := net.Listen("tcp4", addr)
	if err != nil {
		t.Fatalf("socket not closed after the refusal: %v", err)
	}
	again.Close()
}

func TestListenAllowUnmapped(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.refusePCP = pcp.ResultNoResources })
	c := newTestClient(t, testConfig(t, g))
	ln, err := Listen(t.Context(), "tcp", ":0", WithClient(c), AllowUnmapped())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if ln.PublicAddr().IsValid() || !errors.Is(ln.Err(), ErrNoResources) {
		t.Fatalf("PublicAddr %v, Err %v; want none and ErrNoResources", ln.PublicAddr(), ln.Err())
	}
	ev := expectEvents(t, ln.Mapping(), Lost)[0]
	if !errors.Is(ev.Err, ErrNoResources) {
		t.Errorf("Lost error %v", ev.Err)
	}
	g.set(func(g *fakeGW) { g.refusePCP = 0 })
	ev = expectEvents(t, ln.Mapping(), Restored)[0]
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	if ev.External != ext(port) || ln.PublicAddr() != ext(port) || ln.Err() != nil {
		t.Errorf("after Restored: event %v, PublicAddr %v, Err %v", ev.External, ln.PublicAddr(), ln.Err())
	}
}

func TestListenTCP6DualStack(t *testing.T) {
	g := newTestGW(t)
	ln, err := Listen(t.Context(), "tcp6", "[::]:0", WithConfig(testConfig(t, g)))
	if err != nil {
		t.Skipf("no IPv6 socket support here: %v", err)
	}
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).AddrPort().Port()
	if ln.PublicAddr() != ext(port) {
		t.Errorf("PublicAddr = %v", ln.PublicAddr())
	}
	// IPv4, which the gateway forwards, reaches the socket.
	go func() {
		if c, err := net.Dial("tcp4", netip.AddrPortFrom(loopback, port).String()); err == nil {
			c.Close()
		}
	}()
	conn, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	conn.Close()
}
