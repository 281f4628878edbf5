package client

import (
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Sentinel errors. Errors returned by this package wrap one of them where
// one applies, so callers test with errors.Is. A refusal by the gateway is a
// *ResultError, which matches the sentinel for its result code.
var (
	// ErrNotAuthorized: the gateway refuses mappings for this host (PCP
	// NOT_AUTHORIZED, NAT-PMP result 2).
	ErrNotAuthorized = errors.New("not authorized by the gateway")
	// ErrNoResources: the gateway is out of ports or table space (PCP
	// NO_RESOURCES, NAT-PMP result 4 "out of resources").
	ErrNoResources = errors.New("gateway out of resources")
	// ErrQuota: this host has as many mappings as the gateway allows it
	// (PCP USER_EX_QUOTA).
	ErrQuota = errors.New("mapping quota exceeded")
	// ErrCannotProvideExternal: the gateway cannot give the requested
	// external address or port (PCP CANNOT_PROVIDE_EXTERNAL).
	ErrCannotProvideExternal = errors.New("gateway cannot provide the external address or port")
	// ErrUnsupportedProtocol: the gateway does not map this transport
	// protocol or operation (PCP UNSUPP_PROTOCOL, NAT-PMP result 5
	// "unsupported opcode").
	ErrUnsupportedProtocol = errors.New("protocol not supported by the gateway")
	// ErrNetworkFailure: the gateway has no working external connection
	// (PCP NETWORK_FAILURE, NAT-PMP result 3).
	ErrNetworkFailure = errors.New("gateway network failure")
	// ErrNoGateway: no default IPv4 route, so no gateway to ask, and
	// Config.Gateway is not set.
	ErrNoGateway = errors.New("no default gateway")
	// ErrGatewayUnreachable: the gateway did not answer before the
	// retransmissions ran out or the context ended, or answered with an
	// ICMP error (nothing listens on its port 5351).
	ErrGatewayUnreachable = errors.New("gateway unreachable")
	// ErrClosed: the Client is closed or the Mapping released.
	ErrClosed = errors.New("client closed")
	// ErrStateLost: the gateway lost its mappings (restart detected by the
	// epoch check, RFC 6887 section 8.5 and RFC 6886 section 3.6). Lost
	// events carry it; the mapping is re-created automatically.
	ErrStateLost = errors.New("gateway lost its mapping state")
	// ErrUnmappable: the socket's address cannot be reached through the
	// gateway: a loopback address, or a specific IPv6 address (the
	// gateway maps IPv4 only).
	ErrUnmappable = errors.New("address cannot be exposed through the gateway")
)

// Protocol names, as returned by Client.Protocol and used in
// ResultError.Protocol.
const (
	PCP    = "PCP"
	NATPMP = "NAT-PMP"
)

// ResultError is a non-success result code from the gateway.
//
// Protocol is PCP or NATPMP. Op is the request opcode (pcp.OpMap,
// natpmp.OpMapTCP, ...). Code is the result code (RFC 6887 section 7.4 or
// RFC 6886 section 3.5). Lifetime is, for PCP, the error lifetime in seconds:
// how long the gateway asks the client to wait before trying again; it is 0
// for NAT-PMP.
//
// errors.Is(err, ErrX) reports whether the code maps to sentinel ErrX; codes
// without a sentinel (MALFORMED_REQUEST, ADDRESS_MISMATCH, ...) match none.
type ResultError struct {
	Protocol string
	Op       uint8
	Code     uint8
	Lifetime uint32
}

// RetryAfter returns how long the gateway asks the client to wait before it
// tries again: the PCP error lifetime (RFC 6887 section 7.4), at most 30
// minutes (a gateway asking for more is more likely wrong than serious);
// 0 when there is none (NAT-PMP has no such field).
func (e *ResultError) RetryAfter() time.Duration {
	if e.Protocol != PCP || e.Lifetime == 0 {
		return 0
	}
	return min(time.Duration(e.Lifetime)*time.Second, 30*time.Minute)
}

// Error returns, for example, "PCP MAP: NOT_AUTHORIZED (result 2, retry
// after 1800 s)".
func (e *ResultError) Error() string {
	s := e.Protocol + " " + e.opName() + ": " + e.codeName() + " (result " + strconv.Itoa(int(e.Code))
	if e.Lifetime > 0 {
		s += ", retry after " + strconv.FormatUint(uint64(e.Lifetime), 10) + " s"
	}
	return s + ")"
}

func (e *ResultError) opName() string {
	if e.Protocol == PCP {
		switch e.Op {
		case pcp.OpAnnounce:
			return "ANNOUNCE"
		case pcp.OpMap:
			return "MAP"
		}
	} else {
		switch e.Op {
		case natpmp.OpPublicAddress:
			return "public address"
		case natpmp.OpMapUDP:
			return "map UDP"
		case natpmp.OpMapTCP:
			return "map TCP"
		}
	}
	return "opcode " + strconv.Itoa(int(e.Op))
}

// natpmpResultNames are the RFC 6886 section 3.5 names of the NAT-PMP
// result codes.
var natpmpResultNames = [...]string{
	natpmp.ResultSuccess:            "Success",
	natpmp.ResultUnsupportedVersion: "Unsupported Version",
	natpmp.ResultNotAuthorized:      "Not Authorized/Refused",
	natpmp.ResultNetworkFailure:     "Network Failure",
	natpmp.ResultOutOfResources:     "Out of resources",
	natpmp.ResultUnsupportedOpcode:  "Unsupported opcode",
}

func (e *ResultError) codeName() string {
	if e.Protocol == PCP {
		return pcp.ResultString(e.Code)
	}
	if int(e.Code) < len(natpmpResultNames) {
		return natpmpResultNames[e.Code]
	}
	return "result " + strconv.Itoa(int(e.Code))
}

// Is maps the result code to the package's sentinel errors.
func (e *ResultError) Is(target error) bool {
	return target != nil && e.sentinel() == target
}

func (e *ResultError) sentinel() error {
	if e.Protocol == PCP {
		switch e.Code {
		case pcp.ResultNotAuthorized:
			return ErrNotAuthorized
		case pcp.ResultNoResources:
			return ErrNoResources
		case pcp.ResultUserExQuota:
			return ErrQuota
		case pcp.ResultCannotProvideExternal:
			return ErrCannotProvideExternal
		case pcp.ResultUnsuppProtocol:
			return ErrUnsupportedProtocol
		case pcp.ResultNetworkFailure:
			return ErrNetworkFailure
		}
		return nil
	}
	switch e.Code {
	case natpmp.ResultNotAuthorized:
		return ErrNotAuthorized
	case natpmp.ResultNetworkFailure:
		return ErrNetworkFailure
	case natpmp.ResultOutOfResources:
		return ErrNoResources
	case natpmp.ResultUnsupportedOpcode:
		return ErrUnsupportedProtocol
	}
	return nil
}

// transient reports whether the refusal is expected to go away by itself
// soon, so that a mapping being renewed is retried until it expires rather
// than reported lost at once: PCP's short-lifetime errors (RFC 6887 section
// 7.4) and their NAT-PMP counterparts.
func (e *ResultError) transient() bool {
	if e.Protocol == PCP {
		return !pcp.IsLongLifetimeError(e.Code)
	}
	return e.Code == natpmp.ResultNetworkFailure || e.Code == natpmp.ResultOutOfResources
}

// unsuppVersion reports whether err is a gateway's "unsupported version"
// answer, which makes the client fall back from PCP to NAT-PMP.
func unsuppVersion(err error) bool {
	var re *ResultError
	if !errors.As(err, &re) {
		return false
	}
	if re.Protocol == PCP {
		return re.Code == pcp.ResultUnsuppVersion
	}
	return re.Code == natpmp.ResultUnsupportedVersion
}

// unreachable wraps cause as ErrGatewayUnreachable for gateway gw.
func unreachable(gw fmt.Stringer, cause error) error {
	return fmt.Errorf("%w: %v: %w", ErrGatewayUnreachable, gw, cause)
}
