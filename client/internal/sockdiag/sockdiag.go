// Package sockdiag lists the kernel's TCP and UDP sockets through
// NETLINK_SOCK_DIAG (inet_diag), the interface "ss" uses.
//
// The codec (Request.Append, ParseMessages) is pure and portable; only Dump
// talks to the kernel and exists on Linux alone. Field layouts follow
// include/uapi/linux/inet_diag.h and include/uapi/linux/netlink.h.
package sockdiag

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Netlink constants (include/uapi/linux/netlink.h, sock_diag.h).
const (
	nlmsgHdrLen = 16 // struct nlmsghdr

	nlmsgError = 2 // NLMSG_ERROR
	nlmsgDone  = 3 // NLMSG_DONE

	nlmFRequest = 0x1   // NLM_F_REQUEST
	nlmFMulti   = 0x2   // NLM_F_MULTI
	nlmFDump    = 0x300 // NLM_F_ROOT|NLM_F_MATCH

	// sockDiagByFamily is SOCK_DIAG_BY_FAMILY, the message type of both the
	// inet_diag_req_v2 request and every inet_diag_msg reply.
	sockDiagByFamily = 20
)

// inet_diag sizes (include/uapi/linux/inet_diag.h).
const (
	sockIDLen = 48 // struct inet_diag_sockid
	reqV2Len  = 8 + sockIDLen
	msgLen    = 4 + sockIDLen + 20 // struct inet_diag_msg
	rtaHdrLen = 4                  // struct rtattr
)

// AttrSKV6Only is INET_DIAG_SKV6ONLY: a u8 attribute the kernel adds to
// every AF_INET6 socket in state LISTEN or CLOSE (inet_diag_msg_attrs_fill).
const AttrSKV6Only = 11

// Address families and protocols, as in the kernel (linux/socket.h, in.h).
const (
	AFInet  = 2
	AFInet6 = 10

	ProtoTCP = 6
	ProtoUDP = 17
)

// Socket states (include/net/tcp_states.h). UDP reuses them: an unconnected
// UDP socket is StateClose, a connected one StateEstablished.
const (
	StateEstablished = 1
	StateClose       = 7
	StateListen      = 10
)

// States returns the idiag_states bit mask that selects the given states.
func States(states ...uint8) uint32 {
	var m uint32
	for _, s := range states {
		m |= 1 << s
	}
	return m
}

// Request is an inet_diag_req_v2 dump request: every socket of Family and
// Protocol whose state is in the States mask.
type Request struct {
	Family   uint8 // AFInet or AFInet6
	Protocol uint8 // ProtoTCP or ProtoUDP
	States   uint32
}

// Append appends the request as a complete netlink message with sequence
// number seq, in the host's byte order, to b.
func (r Request) Append(b []byte, seq uint32) []byte {
	return r.appendOrder(b, seq, binary.NativeEndian)
}

func (r Request) appendOrder(b []byte, seq uint32, o byteOrder) []byte {
	b = o.AppendUint32(b, nlmsgHdrLen+reqV2Len)
	b = o.AppendUint16(b, sockDiagByFamily)
	b = o.AppendUint16(b, nlmFRequest|nlmFDump)
	b = o.AppendUint32(b, seq)
	b = o.AppendUint32(b, 0) // nlmsg_pid: the kernel fills it in
	b = append(b, r.Family, r.Protocol, 0, 0)
	b = o.AppendUint32(b, r.States)
	return append(b, make([]byte, sockIDLen)...) // no filter on the socket id
}

// Socket is one inet_diag_msg.
type Socket struct {
	Family   uint8 // AFInet or AFInet6
	Protocol uint8 // copied from the request; inet_diag_msg does not carry it
	State    uint8
	Local    netip.AddrPort // IPv4-mapped IPv6 addresses stay as they are
	Remote   netip.AddrPort
	UID      uint32
	Inode    uint32 // the inode of the socket file, as in "socket:[INODE]"

	// V6Only is the IPV6_V6ONLY option; HasV6Only says the kernel reported
	// it (AF_INET6 sockets in state LISTEN or CLOSE).
	V6Only    bool
	HasV6Only bool
}

// ErrTruncated means a message was shorter than its header or declared length.
var ErrTruncated = errors.New("sockdiag: truncated netlink message")

// Errno is an error the kernel returned in NLMSG_ERROR or NLMSG_DONE; its
// value is a positive errno (for example 2, ENOENT, when the kernel has no
// inet_diag handler for the protocol).
type Errno int

func (e Errno) Error() string { return fmt.Sprintf("sockdiag: kernel error %d", int(e)) }

// ParseMessages decodes one datagram of a dump reply, in the host's byte
// order. Messages whose sequence number is not seq are ignored. It returns the
// sockets found, whether the dump ended (NLMSG_DONE) and the first error.
// proto is stored in each Socket's Protocol. It never panics.
func ParseMessages(b []byte, seq uint32, proto uint8) (socks []Socket, done bool, err error) {
	return parseMessages(b, seq, proto, binary.NativeEndian)
}

func parseMessages(b []byte, seq uint32, proto uint8, o byteOrder) (socks []Socket, done bool, err error) {
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return socks, false, ErrTruncated
		}
		l := o.Uint32(b[0:4])
		typ := o.Uint16(b[4:6])
		mseq := o.Uint32(b[8:12])
		if l < nlmsgHdrLen || uint64(l) > uint64(len(b)) {
			return socks, false, ErrTruncated
		}
		payload := b[nlmsgHdrLen:l]
		if next := align4(int(l)); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		if mseq != seq {
			continue
		}
		switch typ {
		case nlmsgDone:
			// Since Linux 4.x a dump can end with an error code here.
			if len(payload) >= 4 {
				if e := int32(o.Uint32(payload)); e < 0 {
					return socks, true, Errno(-e)
				}
			}
			return socks, true, nil
		case nlmsgError:
			if len(payload) < 4 {
				return socks, false, ErrTruncated
			}
			if e := int32(o.Uint32(payload)); e < 0 {
				return socks, true, Errno(-e)
			}
			// An acknowledgement (error 0) carries nothing for a dump.
		case sockDiagByFamily:
			s, err := parseMsg(payload, o)
			if err != nil {
				return socks, false, err
			}
			s.Protocol = proto
			socks = append(socks, s)
		}
		// Other types (NLMSG_NOOP, NLMSG_OVERRUN) carry no socket.
	}
	return socks, false, nil
}

// parseMsg decodes an inet_diag_msg and its attributes.
func parseMsg(b []byte, o byteOrder) (Socket, error) {
	if len(b) < msgLen {
		return Socket{}, ErrTruncated
	}
	s := Socket{Family: b[0], State: b[1]}
	id := b[4 : 4+sockIDLen]
	sport := binary.BigEndian.Uint16(id[0:2]) // ports are in network order
	dport := binary.BigEndian.Uint16(id[2:4])
	src, dst := id[4:20], id[20:36]
	switch s.Family {
	case AFInet:
		s.Local = netip.AddrPortFrom(netip.AddrFrom4([4]byte(src[:4])), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom4([4]byte(dst[:4])), dport)
	case AFInet6:
		s.Local = netip.AddrPortFrom(netip.AddrFrom16([16]byte(src)), sport)
		s.Remote = netip.AddrPortFrom(netip.AddrFrom16([16]byte(dst)), dport)
	default:
		return Socket{}, fmt.Errorf("sockdiag: unexpected address family %d", s.Family)
	}
	rest := b[4+sockIDLen:] // expires, rqueue, wqueue, uid, inode
	s.UID = o.Uint32(rest[12:16])
	s.Inode = o.Uint32(rest[16:20])
	attrs := b[msgLen:]
	for len(attrs) >= rtaHdrLen {
		al := int(o.Uint16(attrs[0:2]))
		at := o.Uint16(attrs[2:4])
		if al < rtaHdrLen || al > len(attrs) {
			return Socket{}, ErrTruncated
		}
		if at == AttrSKV6Only && al >= rtaHdrLen+1 {
			s.HasV6Only = true
			s.V6Only = attrs[rtaHdrLen] != 0
		}
		next := align4(al)
		if next >= len(attrs) {
			break
		}
		attrs = attrs[next:]
	}
	return s, nil
}

// byteOrder is binary.NativeEndian in production; tests decode captured
// little-endian fixtures on any host.
type byteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func align4(n int) int { return (n + 3) &^ 3 }
