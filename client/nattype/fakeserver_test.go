package nattype

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"

	"github.com/pion/stun/v3"
)

// fakeServer is an RFC 5780 STUN server on loopback: primary IP 127.0.0.1
// and alternate IP 127.0.0.2 (Linux routes all of 127.0.0.0/8 to lo), each
// on a primary and an alternate port. It answers with XOR-MAPPED-ADDRESS,
// OTHER-ADDRESS and RESPONSE-ORIGIN and honours CHANGE-REQUEST.
//
// It also plays the NAT in front of the client: nat decides the mapped
// address it reports, and filter decides whether an answer from a given
// server address would get through, from the server addresses the client
// has sent to (a NAT's filter state).
type fakeServer struct {
	t                testing.TB
	primary, alt     netip.Addr
	pport, aport     uint16
	conns            map[netip.AddrPort]*net.UDPConn
	stranger         *net.UDPConn // an address the client never asked
	wg               sync.WaitGroup
	nat              natBehavior
	filter           Behavior // Unknown: no filtering (no NAT, no firewall)
	omitOther        bool     // act as a server without RFC 5780
	ignoreChange     bool     // answer from the receiving address always
	stray            bool     // precede each answer by one with another transaction ID
	strangerFirst    bool     // precede each answer by a copy from an unexpected address
	plainMapped      bool     // MAPPED-ADDRESS instead of XOR-MAPPED-ADDRESS
	blackhole        bool     // answer nothing
	rejectChange     bool     // answer CHANGE-REQUEST with error 420
	dropFirst        int      // drop this many requests first
	mu               sync.Mutex
	requests         map[netip.AddrPort]int                     // per server address
	contacted        map[netip.AddrPort]map[netip.AddrPort]bool // client -> server addresses
	dropped          int
	mappedPublicAddr netip.Addr
}

// natBehavior selects how the fake maps the client's address.
type natBehavior int

const (
	noNAT natBehavior = iota
	natEIM
	natADM
	natAPDM
)

func newFakeServer(t testing.TB) *fakeServer {
	t.Helper()
	s := &fakeServer{
		t:                t,
		primary:          netip.MustParseAddr("127.0.0.1"),
		alt:              netip.MustParseAddr("127.0.0.2"),
		conns:            map[netip.AddrPort]*net.UDPConn{},
		requests:         map[netip.AddrPort]int{},
		contacted:        map[netip.AddrPort]map[netip.AddrPort]bool{},
		mappedPublicAddr: netip.MustParseAddr("192.0.2.1"),
	}
	s.pport = s.bindPair()
	s.aport = s.bindPair()
	var err error
	s.stranger, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 3)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.close)
	return s
}

// start serves until the test ends; set the knobs before.
func (s *fakeServer) start() {
	for addr, c := range s.conns {
		s.wg.Add(1)
		go s.serve(addr, c)
	}
}

// bindPair binds the same free port on both IP addresses.
func (s *fakeServer) bindPair() uint16 {
	s.t.Helper()
	for range 50 {
		c1, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.primary, 0)))
		if err != nil {
			s.t.Fatal(err)
		}
		port := c1.LocalAddr().(*net.UDPAddr).AddrPort().Port()
		c2, err := net.ListenUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(s.alt, port)))
		if err != nil {
			c1.Close()
			continue
		}
		s.conns[netip.AddrPortFrom(s.primary, port)] = c1
		s.conns[netip.AddrPortFrom(s.alt, port)] = c2
		return port
	}
	s.t.Fatal("no port free on both 127.0.0.1 and 127.0.0.2")
	return 0
}

func (s *fakeServer) close() {
	for _, c := range s.conns {
		c.Close()
	}
	s.stranger.Close()
	s.wg.Wait()
}

func (s *fakeServer) primaryAddr() netip.AddrPort { return netip.AddrPortFrom(s.primary, s.pport) }

func (s *fakeServer) requestsTo(a netip.AddrPort) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.requests[a]
}

func (s *fakeServer) serve(local netip.AddrPort, c *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				s.t.Errorf("fake server %v: %v", local, err)
			}
			return
		}
		s.answer(local, from, buf[:n])
	}
}

// mapped is the address the fake NAT gives client towards server address
// to.
func (s *fakeServer) mapped(client, to netip.AddrPort) netip.AddrPort {
	if s.nat == noNAT {
		return client
	}
	port := 20000 + client.Port()%10000
	ipOff, portOff := uint16(0), uint16(0)
	if to.Addr() == s.alt {
		ipOff = 1000
	}
	if to.Port() == s.aport {
		portOff = 100
	}
	switch s.nat {
	case natADM:
		port += ipOff
	case natAPDM:
		port += ipOff + portOff
	}
	return netip.AddrPortFrom(s.mappedPublicAddr, port)
}

// passes reports whether the fake NAT lets an answer from src reach client.
// Call with s.mu held.
func (s *fakeServer) passesLocked(client, src netip.AddrPort) bool {
	seen := s.contacted[client]
	switch s.filter {
	case AddressDependent:
		for a := range seen {
			if a.Addr() == src.Addr() {
				return true
			}
		}
		return false
	case AddressAndPortDependent:
		return seen[src]
	}
	return true
}

func (s *fakeServer) answer(local, client netip.AddrPort, b []byte) {
	var m stun.Message
	if err := stun.Decode(b, &m); err != nil || m.Type != stun.BindingRequest {
		s.t.Errorf("fake server: bad request from %v: %v %v", client, err, m.Type)
		return
	}
	var ch changeRequest
	if err := ch.GetFrom(&m); err != nil && !errors.Is(err, stun.ErrAttributeNotFound) {
		s.t.Errorf("fake server: %v", err)
		return
	}
	s.mu.Lock()
	s.requests[local]++
	if s.contacted[client] == nil {
		s.contacted[client] = map[netip.AddrPort]bool{}
	}
	s.contacted[client][local] = true
	if s.dropped < s.dropFirst || s.blackhole {
		s.dropped++
		s.mu.Unlock()
		return
	}
	src := local
	if !s.ignoreChange {
		if ch.IP {
			src = netip.AddrPortFrom(s.other(src.Addr()), src.Port())
		}
		if ch.Port {
			src = netip.AddrPortFrom(src.Addr(), s.otherPort(src.Port()))
		}
	}
	pass := s.passesLocked(client, src)
	s.mu.Unlock()
	if !pass {
		return
	}

	out := s.conns[src]
	bogus := netip.MustParseAddrPort("198.51.100.99:1")
	if s.stray {
		// Another transaction's answer, with a wrong mapped address.
		out.WriteToUDPAddrPort(s.response(stun.NewTransactionID(), ch, bogus, src), client)
	}
	if s.strangerFirst {
		// Our transaction's ID, but from an address the client did
		// not ask.
		s.stranger.WriteToUDPAddrPort(s.response(m.TransactionID, ch, bogus, src), client)
	}
	out.WriteToUDPAddrPort(s.response(m.TransactionID, ch, s.mapped(client, local), src), client)
}

// response builds the answer to a request with transaction ID id.
func (s *fakeServer) response(id [stun.TransactionIDSize]byte, ch changeRequest, mapped, src netip.AddrPort) []byte {
	setters := []stun.Setter{stun.NewTransactionIDSetter(id), stun.BindingSuccess}
	if s.rejectChange && ch != (changeRequest{}) {
		setters = []stun.Setter{stun.NewTransactionIDSetter(id), stun.BindingError,
			stun.ErrorCodeAttribute{Code: stun.CodeUnknownAttribute, Reason: []byte("Unknown Attribute")}}
	} else {
		if s.plainMapped {
			setters = append(setters, &stun.MappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())})
		} else {
			setters = append(setters, &stun.XORMappedAddress{IP: mapped.Addr().AsSlice(), Port: int(mapped.Port())})
		}
		if !s.omitOther {
			setters = append(setters, &stun.OtherAddress{IP: s.alt.AsSlice(), Port: int(s.aport)})
		}
		setters = append(setters, &stun.ResponseOrigin{IP: src.Addr().AsSlice(), Port: int(src.Port())})
	}
	setters = append(setters, stun.Fingerprint)
	m, err := stun.Build(setters...)
	if err != nil {
		s.t.Errorf("fake server: %v", err)
		return nil
	}
	return m.Raw
}

func (s *fakeServer) other(a netip.Addr) netip.Addr {
	if a == s.primary {
		return s.alt
	}
	return s.primary
}

func (s *fakeServer) otherPort(p uint16) uint16 {
	if p == s.pport {
		return s.aport
	}
	return s.pport
}
