package client

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

func TestResultErrorString(t *testing.T) {
	tests := []struct {
		err  *ResultError
		want string
	}{
		{&ResultError{Protocol: PCP, Op: pcp.OpMap, Code: pcp.ResultNotAuthorized, Lifetime: 1800},
			"PCP MAP: NOT_AUTHORIZED (result 2, retry after 1800 s)"},
		{&ResultError{Protocol: PCP, Op: pcp.OpAnnounce, Code: 99}, "PCP ANNOUNCE: RESULT_99 (result 99)"},
		{&ResultError{Protocol: NATPMP, Op: natpmp.OpMapTCP, Code: natpmp.ResultOutOfResources},
			"NAT-PMP map TCP: Out of resources (result 4)"},
		{&ResultError{Protocol: NATPMP, Op: natpmp.OpPublicAddress, Code: 42}, "NAT-PMP public address: result 42 (result 42)"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestTypedErrors(t *testing.T) {
	tests := []struct {
		proto string
		code  uint8
		want  error // nil: no sentinel
		name  string
	}{
		{PCP, pcp.ResultNotAuthorized, ErrNotAuthorized, "NOT_AUTHORIZED"},
		{PCP, pcp.ResultNoResources, ErrNoResources, "NO_RESOURCES"},
		{PCP, pcp.ResultUserExQuota, ErrQuota, "USER_EX_QUOTA"},
		{PCP, pcp.ResultCannotProvideExternal, ErrCannotProvideExternal, "CANNOT_PROVIDE_EXTERNAL"},
		{PCP, pcp.ResultUnsuppProtocol, ErrUnsupportedProtocol, "UNSUPP_PROTOCOL"},
		{PCP, pcp.ResultNetworkFailure, ErrNetworkFailure, "NETWORK_FAILURE"},
		{PCP, pcp.ResultAddressMismatch, nil, "ADDRESS_MISMATCH"},
		{NATPMP, natpmp.ResultNotAuthorized, ErrNotAuthorized, "Not Authorized/Refused"},
		{NATPMP, natpmp.ResultNetworkFailure, ErrNetworkFailure, "Network Failure"},
		{NATPMP, natpmp.ResultOutOfResources, ErrNoResources, "Out of resources"},
		{NATPMP, natpmp.ResultUnsupportedOpcode, ErrUnsupportedProtocol, "Unsupported opcode"},
	}
	sentinels := []error{ErrNotAuthorized, ErrNoResources, ErrQuota, ErrCannotProvideExternal,
		ErrUnsupportedProtocol, ErrNetworkFailure, ErrNoGateway, ErrGatewayUnreachable, ErrClosed}
	for _, tt := range tests {
		t.Run(tt.proto+" "+tt.name, func(t *testing.T) {
			g := newTestGW(t)
			cfg := testConfig(t, g)
			if tt.proto == NATPMP {
				cfg.Force = "natpmp"
				g.set(func(g *fakeGW) { g.refuseNAT = uint16(tt.code) })
			} else {
				g.set(func(g *fakeGW) { g.refusePCP, g.refuseLife = tt.code, 30 })
			}
			c := newTestClient(t, cfg)
			m, err := c.Map(t.Context(), MapRequest{Protocol: TCP, InternalPort: 4000})
			if m != nil || err == nil {
				t.Fatalf("Map = %v, %v; want a refusal", m, err)
			}
			if !strings.HasPrefix(err.Error(), "client: map tcp port 4000: ") || !strings.Contains(err.Error(), tt.name) {
				t.Errorf("error %q lacks the context or the RFC name %q", err, tt.name)
			}
			var re *ResultError
			if !errors.As(err, &re) || re.Protocol != tt.proto || re.Code != tt.code {
				t.Fatalf("errors.As: %#v; want %s code %d", re, tt.proto, tt.code)
			}
			if tt.proto == PCP && re.Lifetime != 30 {
				t.Errorf("error lifetime %d, want 30", re.Lifetime)
			}
			for _, s := range sentinels {
				if got := errors.Is(err, s); got != (s == tt.want) {
					t.Errorf("errors.Is(err, %v) = %v", s, got)
				}
			}
		})
	}
}

func TestGatewayUnreachable(t *testing.T) {
	t.Run("ICMP port unreachable", func(t *testing.T) {
		pc, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
		if err != nil {
			t.Fatal(err)
		}
		closed := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
		c := newTestClient(t, Config{Gateway: closed, InitialRetransmit: testIRT, DisableAnnounce: true})
		start := time.Now()
		_, err = c.Map(t.Context(), MapRequest{Protocol: UDP, InternalPort: 5000})
		if !errors.Is(err, ErrGatewayUnreachable) {
			t.Fatalf("Map to a closed port = %v; want ErrGatewayUnreachable", err)
		}
		// Without the ICMP check PCP would retransmit until the
		// test's deadline; the bound leaves room for a loaded machine.
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("took %v; an ICMP error should end the exchange at once", d)
		}
	})
	t.Run("NAT-PMP gives up after 9 attempts", func(t *testing.T) {
		g := newTestGW(t)
		g.set(func(g *fakeGW) { g.silent = true })
		cfg := testConfig(t, g)
		cfg.Force, cfg.InitialRetransmit = "natpmp", time.Millisecond
		c := newTestClient(t, cfg)
		_, err := c.Map(t.Context(), MapRequest{Protocol: UDP, InternalPort: 5000})
		if !errors.Is(err, ErrGatewayUnreachable) {
			t.Fatalf("Map = %v; want ErrGatewayUnreachable", err)
		}
		if n := len(g.requests()); n != natpmpAttempts {
			t.Errorf("%d requests sent, want %d", n, natpmpAttempts)
		}
	})
	t.Run("PCP bounded by the context", func(t *testing.T) {
		g := newTestGW(t)
		g.set(func(g *fakeGW) { g.silent = true })
		c := newTestClient(t, testConfig(t, g))
		ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
		defer cancel()
		_, err := c.Map(ctx, MapRequest{Protocol: UDP, InternalPort: 5000})
		if !errors.Is(err, ErrGatewayUnreachable) || !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Map = %v; want ErrGatewayUnreachable and DeadlineExceeded", err)
		}
		if n := len(g.requests()); n < 3 {
			t.Errorf("%d requests in 300 ms with a 20 ms initial timeout; want retransmissions", n)
		}
	})
}

func TestErrClosed(t *testing.T) {
	g := newTestGW(t)
	c := newTestClient(t, testConfig(t, g))
	c.Close()
	if _, err := c.Map(t.Context(), MapRequest{Protocol: TCP, InternalPort: 80}); !errors.Is(err, ErrClosed) {
		t.Errorf("Map after Close = %v; want ErrClosed", err)
	}
	if _, err := c.Protocol(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Protocol after Close = %v; want ErrClosed", err)
	}
	if _, err := c.Gateway(t.Context()); !errors.Is(err, ErrClosed) {
		t.Errorf("Gateway after Close = %v; want ErrClosed", err)
	}
	if _, err := New(Config{Force: "upnp"}); err == nil {
		t.Error("New accepted Force \"upnp\"")
	}
}
