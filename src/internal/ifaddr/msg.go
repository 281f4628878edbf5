package ifaddr

// The codec of the kernel's address notifications (RTM_NEWADDR and
// RTM_DELADDR on NETLINK_ROUTE), pure and portable. Layouts follow
// include/uapi/linux/netlink.h, rtnetlink.h and if_addr.h; headers and
// attribute headers are in the host's byte order.

import (
	"encoding/binary"
	"errors"
	"net/netip"
)

// Netlink and rtnetlink constants.
const (
	nlmsgHdrLen   = 16 // struct nlmsghdr
	ifaddrmsgLen  = 8  // struct ifaddrmsg: family, prefixlen, flags, scope, index
	rtaHdrLen     = 4  // struct rtattr
	nlmsgOverrun  = 4  // NLMSG_OVERRUN
	rtmNewAddr    = 20 // RTM_NEWADDR
	rtmDelAddr    = 21 // RTM_DELADDR
	afInet        = 2  // AF_INET
	ifaAddress    = 1  // IFA_ADDRESS: the peer on point-to-point links
	ifaLocal      = 2  // IFA_LOCAL: the interface's own address
	ifaLabel      = 3  // IFA_LABEL: the interface name, or its alias ("wan0:1")
	rtaTypeMask   = 0x3fff
	maxIPv4Prefix = 32
)

// ErrTruncated is returned by ParseMessages for a message or attribute
// that claims more bytes than there are.
var ErrTruncated = errors.New("ifaddr: truncated netlink message")

// Change is one IPv4 address that appeared on or left an interface.
type Change struct {
	// Deleted is true for an address removed (RTM_DELADDR), false for
	// one added or changed (RTM_NEWADDR).
	Deleted bool
	// Index is the interface index; Label its name, or the address's
	// alias label ("wan0:1").
	Index int
	Label string
	// Prefix is the address with its prefix length (not masked).
	Prefix netip.Prefix
}

// ParseMessages decodes the IPv4 address notifications in one netlink
// datagram, in the host's byte order. Other messages (other families, other
// types) are skipped. lost reports NLMSG_OVERRUN: notifications were
// dropped, so the addresses must be read again. It never panics; on a
// malformed message it returns what came before it and ErrTruncated.
func ParseMessages(b []byte) (cs []Change, lost bool, err error) {
	return parseMessages(b, binary.NativeEndian)
}

// byteOrder is binary.NativeEndian in production; tests decode captured
// little-endian fixtures on any host.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func align4(n int) int { return (n + 3) &^ 3 }

func parseMessages(b []byte, o byteOrder) (cs []Change, lost bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return cs, lost, ErrTruncated
		}
		l := o.Uint32(b[0:4])
		typ := o.Uint16(b[4:6])
		if l < nlmsgHdrLen || uint64(l) > uint64(len(b)) {
			return cs, lost, ErrTruncated
		}
		payload := b[nlmsgHdrLen:l]
		if next := align4(int(l)); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		switch typ {
		case nlmsgOverrun:
			lost = true
			continue
		case rtmNewAddr, rtmDelAddr:
		default:
			continue
		}
		c, ok, err := parseAddr(payload, o)
		if err != nil {
			return cs, lost, err
		}
		if ok {
			c.Deleted = typ == rtmDelAddr
			cs = append(cs, c)
		}
	}
	return cs, lost, nil
}

// parseAddr decodes an ifaddrmsg and its attributes; ok is false for what
// is not an IPv4 address.
func parseAddr(b []byte, o byteOrder) (c Change, ok bool, err error) {
	if len(b) < ifaddrmsgLen {
		return c, false, ErrTruncated
	}
	family, bits := b[0], int(b[1])
	c.Index = int(o.Uint32(b[4:8]))
	var local, addr []byte
	attrs := b[ifaddrmsgLen:]
	for len(attrs) >= rtaHdrLen {
		al := int(o.Uint16(attrs[0:2]))
		at := o.Uint16(attrs[2:4]) & rtaTypeMask
		if al < rtaHdrLen || al > len(attrs) {
			return c, false, ErrTruncated
		}
		v := attrs[rtaHdrLen:al]
		switch at {
		case ifaLocal:
			local = v
		case ifaAddress:
			addr = v
		case ifaLabel:
			c.Label = cString(v)
		}
		next := align4(al)
		if next >= len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	if local == nil {
		local = addr
	}
	if family != afInet || len(local) != 4 || bits > maxIPv4Prefix {
		return c, false, nil
	}
	c.Prefix = netip.PrefixFrom(netip.AddrFrom4([4]byte(local)), bits)
	return c, true, nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}
