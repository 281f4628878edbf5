package main

import (
	"errors"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/dpf-router/dpf/client"
	"github.com/dpf-router/dpf/client/internal/agent"
	"github.com/dpf-router/dpf/src/pcp"
)

// The agent's address reaches the gateway as the internal address: a
// socket bound to a secondary address is forwarded to that address.
func TestMapRequest(t *testing.T) {
	tests := []struct {
		proto string
		addr  netip.Addr
		want  client.MapRequest
	}{
		{"tcp", netip.Addr{}, client.MapRequest{Protocol: client.TCP, InternalPort: 8080}},
		{"udp", netip.MustParseAddr("198.51.100.20"), client.MapRequest{Protocol: client.UDP, InternalAddr: netip.MustParseAddr("198.51.100.20"), InternalPort: 8080}},
		{"tcp", netip.MustParseAddr("::ffff:198.51.100.20"), client.MapRequest{Protocol: client.TCP, InternalAddr: netip.MustParseAddr("198.51.100.20"), InternalPort: 8080}},
		{"tcp", netip.IPv4Unspecified(), client.MapRequest{Protocol: client.TCP, InternalPort: 8080}},
	}
	for _, tt := range tests {
		got, err := mapRequest(tt.proto, tt.addr, 8080)
		if err != nil || got != tt.want {
			t.Errorf("mapRequest(%s, %v) = %+v, %v; want %+v", tt.proto, tt.addr, got, err, tt.want)
		}
	}
	if _, err := mapRequest("sctp", netip.Addr{}, 1); err == nil {
		t.Error("sctp accepted")
	}
}

// What the agent learns from the client's errors without importing package
// client: unreachable gateways, and how long a refusal asks it to wait.
func TestAgentError(t *testing.T) {
	unreachable := fmt.Errorf("client: map tcp port 80: %w: 198.51.100.1:5351: no answer", client.ErrGatewayUnreachable)
	if err := agentError(unreachable); !errors.Is(err, agent.ErrUnreachable) || err.Error() != unreachable.Error() || !errors.Is(err, client.ErrGatewayUnreachable) {
		t.Errorf("agentError(unreachable) = %v", err)
	}
	refused := fmt.Errorf("client: map tcp port 80: %w", &client.ResultError{Protocol: client.PCP, Op: pcp.OpMap, Code: pcp.ResultNotAuthorized, Lifetime: 1800})
	err := agentError(refused)
	if errors.Is(err, agent.ErrUnreachable) {
		t.Errorf("a refusal counts as unreachable: %v", err)
	}
	var ra interface{ RetryAfter() time.Duration }
	if !errors.As(err, &ra) || ra.RetryAfter() != 30*time.Minute {
		t.Errorf("RetryAfter of %v not found or wrong", err)
	}
	for _, tt := range []struct {
		e    client.ResultError
		want time.Duration
	}{
		{client.ResultError{Protocol: client.PCP, Code: pcp.ResultNotAuthorized, Lifetime: 600}, 10 * time.Minute},
		{client.ResultError{Protocol: client.PCP, Code: pcp.ResultNotAuthorized, Lifetime: 86400}, 30 * time.Minute},
		{client.ResultError{Protocol: client.PCP, Code: pcp.ResultNoResources}, 0},
		{client.ResultError{Protocol: client.NATPMP, Code: 2, Lifetime: 600}, 0},
	} {
		if got := tt.e.RetryAfter(); got != tt.want {
			t.Errorf("%v: RetryAfter() = %v, want %v", &tt.e, got, tt.want)
		}
	}
}
