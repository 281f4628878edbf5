package nattype

import "net/netip"

// Behavior is a NAT mapping or filtering behaviour as RFC 4787 section 4
// names them and RFC 5780 section 4 tests them.
type Behavior int

const (
	// Unknown means the behaviour could not be determined; Result
	// says why.
	Unknown Behavior = iota
	// EndpointIndependent: one mapping (or filter entry) serves every
	// remote address and port.
	EndpointIndependent
	// AddressDependent: the mapping (or filter) depends on the remote
	// IP address but not its port.
	AddressDependent
	// AddressAndPortDependent: the mapping (or filter) depends on the
	// remote IP address and port.
	AddressAndPortDependent
)

// String returns the RFC 4787 wording ("Endpoint-Independent",
// "Address-Dependent", "Address and Port-Dependent") or "Unknown".
func (b Behavior) String() string {
	switch b {
	case EndpointIndependent:
		return "Endpoint-Independent"
	case AddressDependent:
		return "Address-Dependent"
	case AddressAndPortDependent:
		return "Address and Port-Dependent"
	}
	return "Unknown"
}

// isNoNAT reports whether test I's mapped address is the local address
// (RFC 5780 section 4.3: then no NAT is in the path).
func isNoNAT(local, mapped netip.AddrPort) bool {
	return local.IsValid() && unmap(local) == unmap(mapped)
}

// mappingBehavior decides the mapping behaviour from the mapped addresses
// of tests I, II and III (RFC 5780 section 4.3): II equal to I is
// endpoint-independent; otherwise III equal to II is address-dependent,
// else address and port-dependent. m3 is not looked at when m1 == m2.
func mappingBehavior(m1, m2, m3 netip.AddrPort) Behavior {
	switch {
	case !m1.IsValid() || !m2.IsValid():
		return Unknown
	case unmap(m1) == unmap(m2):
		return EndpointIndependent
	case !m3.IsValid():
		return Unknown
	case unmap(m2) == unmap(m3):
		return AddressDependent
	}
	return AddressAndPortDependent
}

// filteringBehavior decides the filtering behaviour from whether test II
// (answer from the alternate IP and port) and test III (answer from the
// primary IP, alternate port) got through (RFC 5780 section 4.4). gotIII
// is not looked at when gotII is true.
func filteringBehavior(gotII, gotIII bool) Behavior {
	switch {
	case gotII:
		return EndpointIndependent
	case gotIII:
		return AddressDependent
	}
	return AddressAndPortDependent
}

func unmap(ap netip.AddrPort) netip.AddrPort {
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}
