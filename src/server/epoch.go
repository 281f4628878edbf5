package server

import (
	"errors"
	"net"
	"net/netip"
	"time"
)

// A new external address. Every mapping a client holds names the old one
// (PCP returns the external address; NAT-PMP clients ask for it), so the
// server says that its state changed:
//
//   - the epoch starts again at 0 (RFC 6887 section 8.5, and RFC 6886
//     section 3.6 for NAT-PMP's seconds since start of epoch: a changed
//     external address is lost state), so that a client checking the
//     epoch of any response sees it go back and re-creates its mappings,
//     learning the new address;
//   - the announcements of announce.go go out at once on every LAN socket
//     (RFC 6886 section 3.2.1 asks for the public address notice on every
//     change of the external address, ten times, 250 ms apart at first and
//     doubling; the PCP ANNOUNCE of RFC 6887 section 14.1.3 goes with it),
//     carrying the new address and the new epoch.
//
// The pinholes themselves need nothing: their rules match the WAN interface
// and the external port, never the address (see the firewall package), so
// they forward traffic sent to the new address as soon as it is assigned.

// ResetEpoch makes the epoch start again at 0 now. Epoch counts on from
// there.
func (s *Server) ResetEpoch() {
	now := s.clk.Now()
	s.epochReset.Store(&now)
}

// Announce sends the unsolicited announcements (a PCP ANNOUNCE and, when
// the external address is known, the NAT-PMP public address notice) on every
// open LAN socket now, and again on the RFC 6886 schedule: announceCount
// times, announceInterval apart at first, doubling. Each message carries the
// epoch and address of when it is sent. A later call supersedes the rounds
// of an earlier one, which stop, so that changes in quick succession do not
// pile up schedules. Sockets opened later announce by themselves; with
// Config.NoAnnounce nothing is sent. It returns the number of sockets that
// announce. The goroutines it starts belong to Serve, which waits for them.
func (s *Server) Announce() int {
	gen := s.announceGen.Add(1)
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, sk := range s.socks {
		to := s.announceTo(sk.ifname)
		if !to.IsValid() {
			continue
		}
		s.wg.Add(1)
		go s.announceRound(sk, to, gen)
		n++
	}
	return n
}

// announceRound is announce (announce.go) for round gen: it stops when a
// later round starts, as well as when the socket closes.
func (s *Server) announceRound(sk *socket, to netip.AddrPort, gen uint64) {
	defer s.wg.Done()
	wait := announceInterval
	for i := range announceCount {
		if s.announceGen.Load() != gen {
			return
		}
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
		t := time.NewTimer(wait)
		select {
		case <-sk.done:
			t.Stop()
			return
		case <-t.C:
		}
		wait *= 2
	}
}
