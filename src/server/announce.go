package server

import (
	"errors"
	"net"
	"net/netip"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Unsolicited announcements. When a LAN socket opens (at start-up, or when a
// LAN address appears) the server tells the clients on that link that it
// exists and what its epoch is, so that a client whose mappings were lost
// (the router rebooted with its state wiped) re-creates them at once instead
// of at its next renewal:
//
//   - PCP: an ANNOUNCE response (RFC 6887 section 14.1.3);
//   - NAT-PMP: the external-address notice, a public address response
//     (RFC 6886 section 3.2.1).
//
// Both go to the all-hosts group, port 5350 (clients tell them apart by the
// version octet). RFC 6886 sends the notice announceCount times, the first
// interval 250 ms and doubling; PCP ANNOUNCE follows the same schedule.
// Clients check the epoch in each one, so repeats after the first cost a
// comparison, and a server that kept its state (epoch continued) causes no
// re-mapping at all.
var DefaultAnnounceAddr = netip.MustParseAddrPort("224.0.0.1:5350")

const (
	announceCount    = 10
	announceInterval = 250 * time.Millisecond
)

// announceMessages returns the PCP and NAT-PMP announcements for now.
func (s *Server) announceMessages() [][]byte {
	epoch := s.Epoch()
	msgs := [][]byte{pcp.Response{Op: pcp.OpAnnounce, Epoch: epoch}.AppendTo(nil)}
	if ext := s.cfg.ExternalAddr(); ext.Is4() {
		msgs = append(msgs, natpmp.Response{Op: natpmp.OpPublicAddress, Epoch: epoch, ExternalAddr: ext}.AppendTo(nil))
	}
	return msgs
}

// announce sends the announcements on sk until the schedule ends, the
// socket closes or done is closed. It runs in its own goroutine, owned by
// s.wg.
func (s *Server) announce(sk *socket, to netip.AddrPort) {
	defer s.wg.Done()
	wait := announceInterval
	for i := range announceCount {
		for _, m := range s.announceMessages() {
			if _, err := sk.conn.WriteToUDPAddrPort(m, to); err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				if i == 0 {
					s.log.Debug("sending announcement", "interface", sk.ifname, "to", to.String(), "err", err)
				}
			}
		}
		if i == announceCount-1 {
			return
		}
		select {
		case <-sk.done:
			return
		case <-time.After(wait):
		}
		wait *= 2
	}
}
