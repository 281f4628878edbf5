package client

import (
	"errors"
	"math/rand/v2"
	"net"
	"net/netip"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Gateway announcements arrive on UDP 224.0.0.1:5350:
//
//   - PCP: an unsolicited ANNOUNCE response, sent when the server starts or
//     lost its state (RFC 6887 section 14.1.3);
//   - NAT-PMP: the public address response, sent when the external address
//     changes or the gateway restarts (RFC 6886 section 3.2.1).
//
// Only datagrams whose source is the gateway's address are considered. Each
// goes through the epoch check, and only a failed check re-creates the
// mappings (after a random delay of up to MaxJitter, RFC 6887 section
// 14.1.3). Re-creating on every announcement would be wrong: servers repeat
// them (dpfd sends ten, 250 ms apart and doubling), including after a
// restart that kept its state and continued its epoch, where nothing needs
// doing. A NAT-PMP notice with a new external address makes every mapping
// renew (with the same jitter) so that it learns its new external address
// and reports Changed.

// startAnnounce starts the announcement listener once, unless disabled. A
// failure to bind is logged at debug level only: renewals and their epoch
// checks still find a restarted gateway, only later.
func (c *Client) startAnnounce() {
	c.mu.Lock()
	if c.annStarted || c.cfg.DisableAnnounce || c.closed {
		c.mu.Unlock()
		return
	}
	c.annStarted = true
	c.mu.Unlock()

	addr := c.cfg.AnnounceAddr
	if !addr.IsValid() {
		addr = defaultAnnounceAddr
	}
	network := "udp4"
	if addr.Addr().Is6() {
		network = "udp6"
	}
	lc := net.ListenConfig{Control: reuseAddrPort}
	pc, err := lc.ListenPacket(c.ctx, network, addr.String())
	if err != nil {
		c.log.Debug("cannot listen for gateway announcements", "addr", addr.String(), "err", err)
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		pc.Close()
		return
	}
	c.ann = pc
	c.wg.Add(1)
	go c.announceLoop(pc.(*net.UDPConn))
}

// announceAddr returns the local address of the announcement socket, for
// tests.
func (c *Client) announceAddr() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ann == nil {
		return netip.AddrPort{}
	}
	return c.ann.LocalAddr().(*net.UDPAddr).AddrPort()
}

// announceLoop reads announcements until the socket is closed (by Close).
func (c *Client) announceLoop(conn *net.UDPConn) {
	defer c.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if !errors.Is(err, net.ErrClosed) {
				c.log.Debug("announcement listener stopped", "err", err)
			}
			return
		}
		c.handleAnnouncement(buf[:n], src.Addr().Unmap())
	}
}

// handleAnnouncement processes one datagram received from src.
func (c *Client) handleAnnouncement(b []byte, src netip.Addr) {
	gw := c.knownGateway()
	if !gw.IsValid() || src != gw.Addr().Unmap() || len(b) == 0 {
		c.log.Debug("ignoring datagram on the announcement port", "from", src.String())
		return
	}
	ans := answer{have: true, at: c.now()}
	switch b[0] {
	case pcp.Version:
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpAnnounce || r.Result != pcp.ResultSuccess {
			return
		}
		ans.epoch = r.Epoch
		c.log.Debug("PCP ANNOUNCE", "from", src.String(), "epoch", r.Epoch)
		c.observe(ans, rulePCP, nil)
	case natpmp.Version:
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != natpmp.OpPublicAddress || r.Result != natpmp.ResultSuccess {
			return
		}
		ans.epoch = r.Epoch
		c.log.Debug("NAT-PMP address notice", "from", src.String(), "epoch", r.Epoch, "external", r.ExternalAddr.String())
		if c.observe(ans, ruleNATPMP, nil) {
			c.setExternal(r.ExternalAddr)
			return // observe scheduled the re-creations
		}
		if c.setExternal(r.ExternalAddr) {
			for _, m := range c.liveMappings() {
				m.refreshAfter(rand.N(c.maxJitter()))
			}
		}
	}
}
