package pcp

import "net/netip"

// AddrFrom16 converts a 16-byte wire address (RFC 6887 section 5) to a
// netip.Addr, unmapping IPv4-mapped IPv6 addresses to 4-byte IPv4 addresses.
// All-zero bytes give the IPv6 unspecified address "::".
func AddrFrom16(b [16]byte) netip.Addr {
	return netip.AddrFrom16(b).Unmap()
}

// AddrTo16 converts an address to its 16-byte wire form: IPv4 addresses
// become IPv4-mapped IPv6 addresses, IPv6 addresses are copied (a zone is
// dropped), and the zero Addr becomes 16 zero bytes.
func AddrTo16(a netip.Addr) [16]byte {
	return a.As16()
}

// addrAt reads a 16-byte wire address at b[0:16]; len(b) must be >= 16.
func addrAt(b []byte) netip.Addr {
	return AddrFrom16([16]byte(b[:16]))
}

func appendAddr(b []byte, a netip.Addr) []byte {
	w := AddrTo16(a)
	return append(b, w[:]...)
}
