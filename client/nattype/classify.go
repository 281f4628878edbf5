package nattype

import (
	"fmt"
	"net/netip"
)

// GatewayInfo is what the local port-mapping gateway said about itself.
type GatewayInfo struct {
	// Protocol is "PCP" or "NAT-PMP", whichever answered; "" if no
	// gateway answered.
	Protocol string
	// ExternalAddr is the external address the gateway reported; zero
	// if unknown.
	ExternalAddr netip.Addr
}

// Verdict codes; stable, for machines and logs.
const (
	CodeUnknown           = "unknown"            // no STUN result and nothing from a gateway
	CodeOpen              = "open"               // no NAT, nothing filters
	CodeFirewalled        = "firewalled"         // no NAT, a firewall filters inbound
	CodeNoNAT             = "no-nat"             // no NAT, filtering unknown
	CodeInboundViaDPF     = "inbound-via-dpf"    // the gateway's external address is the internet's view
	CodeCGNAT             = "cgnat"              // carrier-grade NAT upstream
	CodeDoubleNAT         = "double-nat"         // another NAT between the gateway and the internet
	CodeGatewayMismatch   = "gateway-mismatch"   // gateway's public address is not the internet's view
	CodeGatewayUnverified = "gateway-unverified" // a gateway answered, but its address cannot be checked
	CodeHolePunching      = "hole-punching"      // no gateway; endpoint-independent NAT
	CodeNoInbound         = "no-inbound"         // no gateway; NAT blocks inbound
)

// Verdict says whether inbound connections can reach this host.
type Verdict struct {
	// Code is one of the Code constants.
	Code string
	// Text is one plain sentence for people.
	Text string
	// CGNAT is set when a carrier-grade NAT (RFC 6598 shared address
	// space) sits upstream; it implies DoubleNAT.
	CGNAT bool
	// DoubleNAT is set when another NAT sits between the gateway and the
	// internet.
	DoubleNAT bool
	// InboundViaDPF is set when port mappings made on the gateway
	// (by DPF, over PCP or NAT-PMP) are reachable from the internet.
	InboundViaDPF bool
}

// Classify combines a probe result (nil if the probe failed) with what the
// port-mapping gateway reported. It is pure: no I/O, no clock.
func Classify(r *Result, gw GatewayInfo) Verdict {
	var mapped netip.Addr
	if r != nil && r.Mapped.IsValid() {
		mapped = r.Mapped.Addr().Unmap()
	}
	if r != nil && r.NoNAT {
		switch r.Filtering {
		case EndpointIndependent:
			return Verdict{Code: CodeOpen, Text: fmt.Sprintf("No NAT: this host's address %v is public and unsolicited inbound traffic reaches it.", mapped)}
		case AddressDependent, AddressAndPortDependent:
			return Verdict{Code: CodeFirewalled, Text: fmt.Sprintf("No NAT, but a firewall drops unsolicited inbound traffic to %v (%v filtering).", mapped, r.Filtering)}
		}
		return Verdict{Code: CodeNoNAT, Text: fmt.Sprintf("No NAT (this host's address %v is public); whether a firewall drops inbound traffic is unknown.", mapped)}
	}

	ext := gw.ExternalAddr.Unmap()
	if gw.Protocol != "" && ext.IsValid() {
		switch {
		case isCGNAT(ext):
			return Verdict{Code: CodeCGNAT, CGNAT: true, DoubleNAT: true,
				Text: fmt.Sprintf("Carrier-grade NAT upstream: public reachability impossible over IPv4 (the %s gateway's external address %v is in the shared address space 100.64.0.0/10).", gw.Protocol, ext)}
		case mapped.IsValid() && ext == mapped:
			return Verdict{Code: CodeInboundViaDPF, InboundViaDPF: true,
				Text: fmt.Sprintf("Inbound works through DPF (gateway speaks %s, external address %v).", gw.Protocol, ext)}
		case isNonGlobal(ext):
			t := fmt.Sprintf("Double NAT: the %s gateway's external address %v is not public, so another NAT upstream drops inbound connections", gw.Protocol, ext)
			if mapped.IsValid() {
				t += fmt.Sprintf(" (the internet sees %v)", mapped)
			}
			return Verdict{Code: CodeDoubleNAT, DoubleNAT: true, Text: t + "."}
		case mapped.IsValid():
			return Verdict{Code: CodeGatewayMismatch,
				Text: fmt.Sprintf("The %s gateway's external address %v is not the address the internet sees (%v), so its port mappings may not be reachable.", gw.Protocol, ext, mapped)}
		}
		return Verdict{Code: CodeGatewayUnverified,
			Text: fmt.Sprintf("The %s gateway reports external address %v, but without a STUN answer it cannot be checked.", gw.Protocol, ext)}
	}
	if gw.Protocol != "" {
		return Verdict{Code: CodeGatewayUnverified,
			Text: fmt.Sprintf("A %s gateway answered but did not report its external address, so its port mappings cannot be checked.", gw.Protocol)}
	}

	if r == nil || !mapped.IsValid() {
		return Verdict{Code: CodeUnknown, Text: "Neither a port-mapping gateway nor the STUN server answered; reachability is unknown."}
	}
	if r.Local.IsValid() && isCGNAT(r.Local.Addr().Unmap()) {
		return Verdict{Code: CodeCGNAT, CGNAT: true,
			Text: fmt.Sprintf("Carrier-grade NAT upstream: public reachability impossible over IPv4 (this host's address %v is in the shared address space 100.64.0.0/10).", r.Local.Addr())}
	}
	if r.Mapping == Unknown || r.Filtering == Unknown {
		// A STUN server without RFC 5780 support (no OTHER-ADDRESS), or
		// tests that went unanswered for another reason: what is known
		// is the public address, not whether inbound traffic passes.
		return Verdict{Code: CodeUnknown,
			Text: fmt.Sprintf("No port mapping gateway answered; the NAT's public address is %v but its behaviour is unknown (%v mapping, %v filtering; use an RFC 5780 STUN server for a verdict).", mapped, r.Mapping, r.Filtering)}
	}
	if r.Mapping == EndpointIndependent && r.Filtering == EndpointIndependent {
		return Verdict{Code: CodeHolePunching,
			Text: fmt.Sprintf("No port mapping gateway, but the NAT maps and filters endpoint-independently (public address %v): hole punching works.", mapped)}
	}
	return Verdict{Code: CodeNoInbound,
		Text: fmt.Sprintf("No port mapping gateway: inbound connections impossible (%v mapping, %v filtering).", r.Mapping, r.Filtering)}
}

// cgnatPrefix is the shared address space for carrier-grade NAT, RFC 6598.
var cgnatPrefix = netip.MustParsePrefix("100.64.0.0/10")

// isCGNAT reports whether a is in 100.64.0.0/10. netip.Addr.IsPrivate
// does not cover it.
func isCGNAT(a netip.Addr) bool {
	return cgnatPrefix.Contains(a.Unmap())
}

// nonGlobalPrefixes are IPv4 special-purpose ranges (RFC 6890 registry)
// that are not globally reachable and that netip.Addr's predicates miss.
// The documentation ranges (RFC 5737) are left out on purpose: DPF's
// system tests use them as the public internet.
var nonGlobalPrefixes = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("240.0.0.0/4"),
}

// isNonGlobal reports whether a cannot be a public internet address:
// private (RFC 1918, IPv6 ULA), shared (RFC 6598), loopback, link-local,
// multicast, unspecified or otherwise reserved.
func isNonGlobal(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsPrivate() || isCGNAT(a) || !a.IsGlobalUnicast() {
		return true
	}
	for _, p := range nonGlobalPrefixes {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
