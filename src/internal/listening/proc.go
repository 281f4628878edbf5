// Package listening tells which TCP and UDP ports the host itself serves,
// from the socket tables the kernel shows in /proc/net/tcp, tcp6, udp and
// udp6 (of the reading process's network namespace).
//
// dpfd uses it so that it never hands out, as the external port of a
// mapping, a port on which the router runs a service (ssh, DNS, the web
// interface): the DNAT rule of such a mapping would divert the service's
// inbound traffic from the WAN to a LAN host.
//
// The parser ([Parse]) is pure; [Watcher] adds the files, a cache and the
// choice of which sockets count.
package listening

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
)

// Socket states as /proc/net/tcp prints them (include/net/tcp_states.h).
// UDP reuses them: an unconnected UDP socket is StateClose, a connected one
// StateEstablished.
const (
	StateEstablished = 0x01
	StateClose       = 0x07
	StateListen      = 0x0A
)

// Entry is one socket line of a /proc/net/{tcp,tcp6,udp,udp6} table.
type Entry struct {
	// Local and Remote are the socket's addresses; an unconnected socket
	// has the unspecified remote address and port 0. IPv4 tables give
	// 4-byte addresses, IPv6 tables 16-byte ones (IPv4-mapped addresses
	// are kept as such).
	Local, Remote netip.AddrPort
	// State is the TCP state number (StateListen, ...).
	State uint8
}

// ErrFormat is wrapped by every error Parse returns.
var ErrFormat = errors.New("not a /proc/net socket table")

// hex digits of an address in the tables: an IPv4 address is one 32-bit
// word, an IPv6 address four, each printed with %08X.
const (
	ipv4HexLen = 8
	ipv6HexLen = 32
)

// Parse reads a socket table as the kernel prints it in /proc/net/tcp,
// tcp6, udp and udp6: a header line starting with "sl", then one line per
// socket, "N: LOCAL REMOTE ST ...", where an address is ADDR:PORT in
// hexadecimal. The kernel prints each 32-bit word of an address as a
// number in the machine's byte order (order: binary.NativeEndian for the
// running kernel), and ports as plain numbers. Fields after the state are
// ignored. Errors wrap [ErrFormat] and name the line; empty input or a
// table without sockets gives no entries and no error.
func Parse(b []byte, order binary.ByteOrder) ([]Entry, error) {
	var out []Entry
	for n := 1; len(b) > 0; n++ {
		var line []byte
		line, b, _ = bytes.Cut(b, []byte{'\n'})
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if n == 1 {
			if string(f[0]) != "sl" {
				return nil, fmt.Errorf("%w: line 1 is not the header", ErrFormat)
			}
			continue
		}
		if len(f) < 4 || len(f[0]) < 2 || f[0][len(f[0])-1] != ':' {
			return nil, fmt.Errorf("%w: line %d: want \"N: LOCAL REMOTE STATE ...\"", ErrFormat, n)
		}
		local, err := parseAddrPort(f[1], order)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: local address: %w", ErrFormat, n, err)
		}
		remote, err := parseAddrPort(f[2], order)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: remote address: %w", ErrFormat, n, err)
		}
		if local.Addr().BitLen() != remote.Addr().BitLen() {
			return nil, fmt.Errorf("%w: line %d: local and remote address families differ", ErrFormat, n)
		}
		st, err := parseHex(f[3], 2)
		if err != nil {
			return nil, fmt.Errorf("%w: line %d: state: %w", ErrFormat, n, err)
		}
		out = append(out, Entry{Local: local, Remote: remote, State: uint8(st)})
	}
	return out, nil
}

// parseAddrPort reads ADDR:PORT, ADDR being 8 or 32 hex digits.
func parseAddrPort(b []byte, order binary.ByteOrder) (netip.AddrPort, error) {
	a, p, ok := bytes.Cut(b, []byte{':'})
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("%q has no port", b)
	}
	port, err := parseHex(p, 4)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port: %w", err)
	}
	var raw [16]byte
	switch len(a) {
	case ipv4HexLen, ipv6HexLen:
	default:
		return netip.AddrPort{}, fmt.Errorf("address %q is neither 8 nor 32 hex digits", a)
	}
	for i := 0; i < len(a); i += 8 {
		w, err := parseHex(a[i:i+8], 8)
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("address: %w", err)
		}
		order.PutUint32(raw[i/2:], uint32(w))
	}
	if len(a) == ipv4HexLen {
		return netip.AddrPortFrom(netip.AddrFrom4([4]byte(raw[:4])), uint16(port)), nil
	}
	return netip.AddrPortFrom(netip.AddrFrom16(raw), uint16(port)), nil
}

// parseHex reads exactly digits hexadecimal digits (either case).
func parseHex(b []byte, digits int) (uint64, error) {
	if len(b) != digits {
		return 0, fmt.Errorf("%q is not %d hex digits", b, digits)
	}
	// ParseUint accepts no sign, prefix or underscore with base 16.
	v, err := strconv.ParseUint(string(b), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not hexadecimal", b)
	}
	return v, nil
}
