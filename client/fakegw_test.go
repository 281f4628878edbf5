package client

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// fakeGW is a PCP and NAT-PMP gateway on a loopback UDP port, built on the
// codecs, with knobs for misbehaviour. It keeps mappings keyed by protocol,
// client address and internal port, and counts its epoch from epochBase
// (1000 at start, so that a restart to 0 fails the epoch check).
type fakeGW struct {
	conn *net.UDPConn
	addr netip.AddrPort
	ext  netip.Addr
	done chan struct{}

	mu         sync.Mutex
	epochBase  uint32
	started    time.Time
	natpmpOnly bool
	silent     bool     // answer nothing
	drop       int      // drop the next drop requests
	bogus      []string // "nonce", "proto", "port", "op": bad answers sent before the next real one
	refusePCP  uint8    // PCP result code for MAP requests, 0 grants
	refuseLife uint32   // PCP error lifetime with refusePCP
	refuseNAT  uint16   // NAT-PMP result code for mapping requests, 0 grants
	shift      uint16   // granted external port = suggested + shift
	maxLife    uint32   // cap on granted lifetime, 0 none
	// authKey makes the gateway check DPF AUTH options as dpfd does with
	// option auth 'optional' (signed requests must verify and not be
	// replays; answers to them are signed); nil treats the option as an
	// unknown mandatory one (UNSUPP_OPTION), as a gateway without DPF
	// authentication does.
	authKey []byte
	// forge lists bad answers sent before the next real answer to a
	// signed request: "unsigned" (no AUTH option), "badmac" (signed with
	// another key), "oldseq" (signed for a sequence number not sent),
	// "flipped" (signed, then one bit of the MAC changed).
	forge []string
	// forgeOnly sends the forged answers, for every signed request, and
	// never the real one.
	forgeOnly bool
	authSeen  map[uint64]bool // sequence numbers accepted
	maps      map[fakeKey]fakeMap
	reqs      []fakeReq
}

type fakeKey struct {
	proto uint8
	addr  netip.Addr
	port  uint16
}

type fakeMap struct {
	ext   uint16
	nonce [12]byte
}

// fakeReq is one recorded request.
type fakeReq struct {
	src        netip.AddrPort
	pcp        bool // PCP (else NAT-PMP)
	op         uint8
	lifetime   uint32
	nonce      [12]byte
	proto      uint8
	internal   uint16
	suggested  uint16
	suggAddr   netip.Addr
	clientAddr netip.Addr
	desc       string
	signed     bool   // carried an AUTH option
	seq        uint64 // its sequence number
	size       int    // datagram size
}

var fakeExternal = netip.MustParseAddr("203.0.113.7")

func startFakeGW() (*fakeGW, error) {
	conn, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		return nil, err
	}
	g := &fakeGW{
		conn:      conn,
		addr:      conn.LocalAddr().(*net.UDPAddr).AddrPort(),
		ext:       fakeExternal,
		done:      make(chan struct{}),
		epochBase: 1000,
		started:   time.Now(),
		maps:      map[fakeKey]fakeMap{},
		authSeen:  map[uint64]bool{},
	}
	go g.serve()
	return g, nil
}

func (g *fakeGW) Close() {
	g.conn.Close()
	<-g.done
}

func (g *fakeGW) epochLocked() uint32 {
	return g.epochBase + uint32(time.Since(g.started)/time.Second)
}

// restart forgets every mapping and restarts the epoch at 0.
func (g *fakeGW) restart() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.maps = map[fakeKey]fakeMap{}
	g.epochBase, g.started = 0, time.Now()
}

func (g *fakeGW) set(f func(g *fakeGW)) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f(g)
}

// requests returns a copy of the recorded requests.
func (g *fakeGW) requests() []fakeReq {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]fakeReq(nil), g.reqs...)
}

// has reports whether the gateway holds a mapping for internal port port.
func (g *fakeGW) has(proto uint8, port uint16) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for k := range g.maps {
		if k.proto == proto && k.port == port {
			return true
		}
	}
	return false
}

// announce sends a PCP ANNOUNCE with the current epoch to to.
func (g *fakeGW) announce(to netip.AddrPort) error {
	g.mu.Lock()
	b := pcp.Response{Op: pcp.OpAnnounce, Epoch: g.epochLocked()}.AppendTo(nil)
	g.mu.Unlock()
	_, err := g.conn.WriteToUDPAddrPort(b, to)
	return err
}

// notice sends a NAT-PMP external address notice to to.
func (g *fakeGW) notice(to netip.AddrPort) error {
	g.mu.Lock()
	b := natpmp.Response{Op: natpmp.OpPublicAddress, Epoch: g.epochLocked(), ExternalAddr: g.ext}.AppendTo(nil)
	g.mu.Unlock()
	_, err := g.conn.WriteToUDPAddrPort(b, to)
	return err
}

func (g *fakeGW) serve() {
	defer close(g.done)
	buf := make([]byte, 2048)
	for {
		n, src, err := g.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		for _, out := range g.handle(append([]byte(nil), buf[:n]...), src) {
			g.conn.WriteToUDPAddrPort(out, src)
		}
	}
}

// handle returns the datagrams to send back for pkt.
func (g *fakeGW) handle(pkt []byte, src netip.AddrPort) [][]byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	if len(pkt) < 2 {
		return nil
	}
	rec := fakeReq{src: src, pcp: pkt[0] != natpmp.Version, op: pkt[1], size: len(pkt)}
	var out [][]byte
	if rec.pcp {
		out = g.handlePCPLocked(pkt, &rec)
	} else {
		out = g.handleNATPMPLocked(pkt, &rec)
	}
	g.reqs = append(g.reqs, rec)
	if g.drop > 0 {
		g.drop--
		return nil
	}
	if g.silent {
		return nil
	}
	return out
}

// handlePCPLocked handles the AUTH option, if any, then answerPCPLocked.
func (g *fakeGW) handlePCPLocked(pkt []byte, rec *fakeReq) [][]byte {
	a, found, err := pcp.ParseAuth(pkt)
	if found && err == nil {
		rec.signed, rec.seq = true, a.Seq
	}
	if g.authKey == nil || !found || g.natpmpOnly {
		return g.answerPCPLocked(pkt, rec)
	}
	if err := a.Verify(pkt, g.authKey); err != nil || g.authSeen[a.Seq] {
		return [][]byte{pcp.AppendErrorResponse(nil, pkt[:a.Offset], pcp.ResultNotAuthorized, 1800, g.epochLocked())}
	}
	g.authSeen[a.Seq] = true
	var out [][]byte
	for _, kind := range g.forge {
		for _, b := range g.answerPCPLocked(pkt[:a.Offset], &fakeReq{}) {
			b = append([]byte(nil), b...)
			if len(b) >= pcp.ResponseHeaderSize+pcp.MapPayloadSize && b[1] == pcp.ResponseBit|pcp.OpMap {
				b[pcp.ResponseHeaderSize+18], b[pcp.ResponseHeaderSize+19] = 0, 1 // external port 1
			}
			switch kind {
			case "badmac":
				b, _ = pcp.SignResponse(b, bytes.Repeat([]byte{0xee}, 32), a.Seq)
			case "oldseq":
				b, _ = pcp.SignResponse(b, g.authKey, a.Seq-1)
			case "flipped":
				b, _ = pcp.SignResponse(b, g.authKey, a.Seq)
				b[len(b)-1] ^= 1
			}
			out = append(out, b)
		}
	}
	if g.forgeOnly {
		return out
	}
	g.forge = nil
	for _, b := range g.answerPCPLocked(pkt[:a.Offset], rec) {
		s, err := pcp.SignResponse(b, g.authKey, a.Seq)
		if err != nil {
			panic(err)
		}
		out = append(out, s)
	}
	return out
}

func (g *fakeGW) answerPCPLocked(pkt []byte, rec *fakeReq) [][]byte {
	epoch := g.epochLocked()
	if g.natpmpOnly {
		// What a NAT-PMP-only gateway answers: a version 0 message with
		// result 1 (RFC 6886 section 3.5).
		return [][]byte{natpmp.Response{Op: pkt[1], Result: natpmp.ResultUnsupportedVersion, Epoch: epoch}.AppendTo(nil)}
	}
	req, err := pcp.ParseRequest(pkt)
	rec.lifetime, rec.nonce, rec.proto = req.Lifetime, req.Map.Nonce, req.Map.Protocol
	rec.internal, rec.suggested, rec.suggAddr = req.Map.InternalPort, req.Map.ExternalPort, req.Map.ExternalAddr
	rec.clientAddr, rec.desc = req.ClientAddr, req.Description
	if err != nil {
		var pe *pcp.ParseError
		if errors.As(err, &pe) && !pe.Drop {
			return [][]byte{pcp.AppendErrorResponse(nil, pkt, pe.Result, 0, epoch)}
		}
		return nil
	}
	if req.Op == pcp.OpAnnounce {
		return [][]byte{pcp.Response{Op: pcp.OpAnnounce, Epoch: epoch}.AppendTo(nil)}
	}
	md := req.Map
	if g.refusePCP != 0 && req.Lifetime != 0 {
		return [][]byte{pcp.AppendErrorResponse(nil, pkt, g.refusePCP, g.refuseLife, epoch)}
	}
	key := fakeKey{md.Protocol, req.ClientAddr.Unmap(), md.InternalPort}
	resp := pcp.Response{Op: pcp.OpMap, Epoch: epoch, Map: md}
	if req.Lifetime == 0 {
		delete(g.maps, key)
		resp.Map.ExternalPort, resp.Map.ExternalAddr = 0, g.ext
	} else {
		fm, ok := g.maps[key]
		if !ok {
			port := md.ExternalPort
			if port == 0 {
				port = md.InternalPort
			}
			fm = fakeMap{ext: port + g.shift, nonce: md.Nonce}
			g.maps[key] = fm
		}
		resp.Map.ExternalPort, resp.Map.ExternalAddr = fm.ext, g.ext
		resp.Lifetime = req.Lifetime
		if g.maxLife > 0 {
			resp.Lifetime = min(resp.Lifetime, g.maxLife)
		}
	}
	var out [][]byte
	for _, kind := range g.bogus {
		b := resp
		switch kind {
		case "nonce":
			b.Map.Nonce[0] ^= 0xff
		case "proto":
			b.Map.Protocol ^= 6 ^ 17
		case "port":
			b.Map.InternalPort++
		case "op":
			b.Op = pcp.OpAnnounce
		}
		b.Map.ExternalPort = 1 // a port the client must not take
		out = append(out, b.AppendTo(nil))
	}
	g.bogus = nil
	return append(out, resp.AppendTo(nil))
}

func (g *fakeGW) handleNATPMPLocked(pkt []byte, rec *fakeReq) [][]byte {
	epoch := g.epochLocked()
	req, err := natpmp.ParseRequest(pkt)
	rec.lifetime, rec.internal, rec.suggested = req.Lifetime, req.InternalPort, req.SuggestedExternalPort
	r := natpmp.Response{Op: req.Op, Epoch: epoch, InternalPort: req.InternalPort}
	switch {
	case errors.Is(err, natpmp.ErrUnsupportedVersion):
		r.Result = natpmp.ResultUnsupportedVersion
		return [][]byte{r.AppendTo(nil)}
	case err != nil:
		return nil
	}
	if req.Op == natpmp.OpPublicAddress {
		r.ExternalAddr = g.ext
		return [][]byte{r.AppendTo(nil)}
	}
	if g.refuseNAT != 0 && req.Lifetime != 0 {
		r.Result = g.refuseNAT
		return [][]byte{r.AppendTo(nil)}
	}
	proto := uint8(UDP)
	if req.Op == natpmp.OpMapTCP {
		proto = uint8(TCP)
	}
	rec.proto = proto
	key := fakeKey{proto, rec.src.Addr(), req.InternalPort}
	if req.Lifetime == 0 {
		delete(g.maps, key)
		return [][]byte{r.AppendTo(nil)}
	}
	fm, ok := g.maps[key]
	if !ok {
		port := req.SuggestedExternalPort
		if port == 0 {
			port = req.InternalPort
		}
		fm = fakeMap{ext: port + g.shift}
		g.maps[key] = fm
	}
	r.ExternalPort, r.Lifetime = fm.ext, req.Lifetime
	if g.maxLife > 0 {
		r.Lifetime = min(r.Lifetime, g.maxLife)
	}
	var out [][]byte
	if len(g.bogus) > 0 {
		b := r
		b.InternalPort++
		b.ExternalPort = 1
		out = append(out, b.AppendTo(nil))
		g.bogus = nil
	}
	return append(out, r.AppendTo(nil))
}
