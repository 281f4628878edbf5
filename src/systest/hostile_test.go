package systest

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Retransmission schedules: the delays before each retransmission. NAT-PMP
// starts at 250 ms and doubles (RFC 6886 section 3.1); PCP starts at IRT =
// 3 s and doubles (RFC 6887 section 8.1.1, RAND left out). answerWithin
// bounds the whole exchange: a request counts as answered when the
// response to any of its transmissions arrives within it.
var (
	natpmpRetransmit = []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second, 2 * time.Second, 4 * time.Second}
	pcpRetransmit    = []time.Duration{3 * time.Second, 6 * time.Second}
)

const answerWithin = 12 * time.Second

// requester sends PCP and NAT-PMP requests from one LAN host to the router,
// one at a time, and waits for the matching response, retransmitting on
// the protocol's schedule.
type requester struct {
	conn *net.UDPConn
	gw   netip.AddrPort
	buf  []byte
}

// newRequester opens a UDP socket in namespace ns bound to src.
func newRequester(t testing.TB, ns string, src netip.Addr) *requester {
	t.Helper()
	q := &requester{gw: netip.AddrPortFrom(lab.RouterLAN, pcp.ServerPort), buf: make([]byte, 2048)}
	err := lab.In(ns, func() error {
		var err error
		q.conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: src.AsSlice()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { q.conn.Close() })
	return q
}

// exchange sends req and returns the first datagram for which match is
// true, and how many times req was sent. Other datagrams (late answers to
// earlier requests) are skipped.
func (q *requester) exchange(req []byte, schedule []time.Duration, match func([]byte) bool) ([]byte, int, error) {
	start := time.Now()
	end := start.Add(answerWithin)
	sent := 0
	next := start
	for {
		now := time.Now()
		if !now.Before(end) {
			return nil, sent, fmt.Errorf("no answer within %v after %d transmissions", answerWithin, sent)
		}
		if !now.Before(next) {
			if _, err := q.conn.WriteToUDPAddrPort(req, q.gw); err != nil {
				return nil, sent, fmt.Errorf("sending: %w", err)
			}
			if sent < len(schedule) {
				next = now.Add(schedule[sent])
			} else {
				next = end
			}
			sent++
		}
		wake := next
		if end.Before(wake) {
			wake = end
		}
		q.conn.SetReadDeadline(wake)
		n, from, err := q.conn.ReadFromUDPAddrPort(q.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return nil, sent, fmt.Errorf("receiving: %w", err)
		}
		if from.Addr().Unmap() == q.gw.Addr() && match(q.buf[:n]) {
			return bytes.Clone(q.buf[:n]), sent, nil
		}
	}
}

// natpmpMap sends a NAT-PMP mapping request and returns the response.
func (q *requester) natpmpMap(op uint8, in, ext uint16, life uint32) (natpmp.Response, int, error) {
	req := natpmp.Request{Op: op, InternalPort: in, SuggestedExternalPort: ext, Lifetime: life}.AppendTo(nil)
	var resp natpmp.Response
	_, n, err := q.exchange(req, natpmpRetransmit, func(b []byte) bool {
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != op || r.InternalPort != in {
			return false
		}
		resp = r
		return true
	})
	return resp, n, err
}

// pcpMap sends a PCP MAP request from client and returns the response.
func (q *requester) pcpMap(client netip.Addr, nonce [12]byte, proto uint8, in, ext uint16, life uint32, opts ...pcp.Option) (pcp.Response, int, error) {
	req := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: life, ClientAddr: client,
		Map: pcp.MapData{Nonce: nonce, Protocol: proto, InternalPort: in, ExternalPort: ext}, Options: opts}.AppendTo(nil)
	var resp pcp.Response
	_, n, err := q.exchange(req, pcpRetransmit, func(b []byte) bool {
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpMap || r.Map.Nonce != nonce {
			return false
		}
		resp = r
		return true
	})
	return resp, n, err
}

// hostileGen makes hostile datagrams, none of which is a well-formed
// mapping request from src, so that sending them must change no lease.
type hostileGen struct {
	rng    *rand.Rand
	src    netip.Addr   // the flooding host
	others []netip.Addr // addresses it claims in spoofed requests
	cut    int          // next truncation length
	fixed  int          // generated packets that had to be spoiled
}

// hostileClasses are the kinds of datagram a flood cycles through.
var hostileClasses = []struct {
	name string
	make func(g *hostileGen) []byte
}{
	{"random", (*hostileGen).random},
	{"truncated-pcp", (*hostileGen).truncatedPCP},
	{"truncated-natpmp", (*hostileGen).truncatedNATPMP},
	{"oversized", (*hostileGen).oversized},
	{"response-bit", (*hostileGen).responseBit},
	{"unknown-version", (*hostileGen).unknownVersion},
	{"unknown-opcode", (*hostileGen).unknownOpcode},
	{"bad-option-length", (*hostileGen).badOptionLength},
	{"option-after-end", (*hostileGen).optionAfterEnd},
	{"address-mismatch", (*hostileGen).addressMismatch},
	{"extremes", (*hostileGen).extremes},
	{"natpmp-length", (*hostileGen).natpmpLength},
}

func (g *hostileGen) nonce() (n [12]byte) {
	for i := range n {
		n[i] = byte(g.rng.Uint32())
	}
	return n
}

// validPCP is a well-formed MAP request from client with a random choice of
// valid options, fields at random.
func (g *hostileGen) validPCP(client netip.Addr) []byte {
	var opts []pcp.Option
	if g.rng.IntN(2) == 0 {
		opts = append(opts, pcp.FilterOption(pcp.Filter{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: uint16(g.rng.Uint32())}))
	}
	if g.rng.IntN(2) == 0 {
		opts = append(opts, pcp.DescriptionOption("hostile "+strconv.Itoa(g.rng.IntN(1000))))
	}
	if g.rng.IntN(3) == 0 {
		opts = append(opts, pcp.PreferFailureOption())
	}
	if g.rng.IntN(4) == 0 {
		opts = append(opts, pcp.ThirdPartyOption(g.others[g.rng.IntN(len(g.others))]))
	}
	protos := []uint8{6, 17}
	return pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: g.rng.Uint32N(7200),
		ClientAddr: client, Options: opts,
		Map: pcp.MapData{Nonce: g.nonce(), Protocol: protos[g.rng.IntN(2)],
			InternalPort: uint16(1024 + g.rng.IntN(64000)), ExternalPort: uint16(g.rng.Uint32())}}.AppendTo(nil)
}

// validNATPMP is a well-formed 12-byte NAT-PMP mapping request.
func (g *hostileGen) validNATPMP() []byte {
	return natpmp.Request{Op: uint8(1 + g.rng.IntN(2)), InternalPort: uint16(1024 + g.rng.IntN(64000)),
		SuggestedExternalPort: uint16(g.rng.Uint32()), Lifetime: g.rng.Uint32N(7200)}.AppendTo(nil)
}

func (g *hostileGen) random() []byte {
	b := make([]byte, g.rng.IntN(2001))
	for i := range b {
		b[i] = byte(g.rng.Uint32())
	}
	if len(b) > 0 {
		// Versions 0 (NAT-PMP) and 2 (PCP) are what the server
		// dispatches on, so they come up often.
		switch g.rng.IntN(3) {
		case 0:
			b[0] = natpmp.Version
		case 1:
			b[0] = pcp.Version
		}
	}
	return b
}

// truncatedPCP cuts a valid request at every length in turn.
func (g *hostileGen) truncatedPCP() []byte {
	b := g.validPCP(g.src)
	g.cut++
	return b[:g.cut%len(b)]
}

// truncatedNATPMP cuts a valid 12-byte request at every shorter length.
func (g *hostileGen) truncatedNATPMP() []byte {
	b := g.validNATPMP()
	g.cut++
	return b[:g.cut%len(b)]
}

// oversized: longer than RFC 6887 section 7's 1100 bytes.
func (g *hostileGen) oversized() []byte {
	size := pcp.MaxMessageSize + 1 + g.rng.IntN(900)
	var b []byte
	switch g.rng.IntN(3) {
	case 0: // a valid request padded with an optional option
		b = g.validPCP(g.src)
		pad := max(size-len(b)-pcp.OptionHeaderSize, 0)
		b = append(b, 200, 0, byte(pad>>8), byte(pad))
	case 1: // NAT-PMP public address request with trailing bytes (not a mapping)
		b = []byte{natpmp.Version, natpmp.OpPublicAddress}
	default: // ANNOUNCE with a long tail
		b = pcp.Request{Version: pcp.Version, Op: pcp.OpAnnounce, ClientAddr: g.src}.AppendTo(nil)
	}
	for len(b) < size {
		b = append(b, byte(g.rng.Uint32()))
	}
	return b
}

func (g *hostileGen) responseBit() []byte {
	var b []byte
	if g.rng.IntN(2) == 0 {
		b = g.validPCP(g.src)
	} else {
		b = g.validNATPMP()
	}
	b[1] |= pcp.ResponseBit // the same bit in both protocols
	return b
}

func (g *hostileGen) unknownVersion() []byte {
	b := g.validPCP(g.src)
	for b[0] == natpmp.Version || b[0] == pcp.Version {
		b[0] = byte(g.rng.Uint32())
	}
	return b
}

func (g *hostileGen) unknownOpcode() []byte {
	op := byte(3 + g.rng.IntN(125)) // 3-127: neither version defines them
	if g.rng.IntN(2) == 0 {
		b := g.validPCP(g.src)
		b[1] = op
		return b
	}
	b := g.validNATPMP()
	b[1] = op
	return b
}

// badOptionLength: options of the wrong size for their code, or whose
// length runs past the message.
func (g *hostileGen) badOptionLength() []byte {
	b := g.validPCP(g.src)
	switch g.rng.IntN(5) {
	case 0: // THIRD_PARTY with 4 bytes instead of 16
		b = append(b, pcp.OptThirdParty, 0, 0, 4, 198, 51, 100, 9)
	case 1: // FILTER with 8 bytes instead of 20
		b = append(b, pcp.OptFilter, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 0)
	case 2: // PREFER_FAILURE with data
		b = append(b, pcp.OptPreferFailure, 0, 0, 4, 1, 2, 3, 4)
	case 3: // DESCRIPTION that is not UTF-8
		b = append(b, pcp.OptDescription, 0, 0, 4, 0xff, 0xfe, 0xfd, 0xfc)
	default: // a length beyond the end of the message
		n := 8 + g.rng.IntN(1000)
		b = append(b, byte(128+g.rng.IntN(128)), 0, byte(n>>8), byte(n), 0, 0, 0, 0)
	}
	return b
}

// optionAfterEnd: bytes after the payload that are not whole options.
func (g *hostileGen) optionAfterEnd() []byte {
	b := g.validPCP(g.src)
	switch g.rng.IntN(3) {
	case 0: // 1-3 stray bytes: not a multiple of 4
		for range 1 + g.rng.IntN(3) {
			b = append(b, byte(g.rng.Uint32()))
		}
	case 1: // an option header claiming data that is not there
		b = append(b, pcp.OptFilter, 0, 0, 20)
	default: // an unknown mandatory option (0-127 besides the known ones)
		code := byte(4 + g.rng.IntN(100))
		b = append(b, code, 0, 0, 4, 0, 0, 0, 0)
	}
	return b
}

// addressMismatch: well-formed except that the client address is not the
// sender's: another LAN host's, the router's, an internet host's, IPv6.
func (g *hostileGen) addressMismatch() []byte {
	return g.validPCP(g.others[g.rng.IntN(len(g.others))])
}

// extremes: lifetimes and ports at their limits, each with one malformed
// part so that it is never a valid request.
func (g *hostileGen) extremes() []byte {
	lifetimes := []uint32{0, 1, 1<<31 - 1, 1<<32 - 1}
	ports := []uint16{0, 1, 1023, 65535}
	protos := []uint8{0, 6, 17, 255}
	req := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: lifetimes[g.rng.IntN(4)], ClientAddr: g.src,
		Map: pcp.MapData{Nonce: g.nonce(), Protocol: protos[g.rng.IntN(4)],
			InternalPort: ports[g.rng.IntN(4)], ExternalPort: ports[g.rng.IntN(4)]}}
	if g.rng.IntN(2) == 0 {
		req.Map.ExternalAddr = netip.MustParseAddr("203.0.113.200")
	}
	var b []byte
	if g.rng.IntN(4) == 0 {
		b = natpmp.Request{Op: uint8(1 + g.rng.IntN(2)), InternalPort: req.Map.InternalPort,
			SuggestedExternalPort: req.Map.ExternalPort, Lifetime: req.Lifetime}.AppendTo(nil)
		b = b[:len(b)-1-g.rng.IntN(10)] // short
		return b
	}
	switch g.rng.IntN(4) {
	case 0:
		req.ClientAddr = g.others[g.rng.IntN(len(g.others))]
		b = req.AppendTo(nil)
	case 1:
		b = req.AppendTo(nil)
		b[1] |= pcp.ResponseBit
	case 2:
		b = append(req.AppendTo(nil), 0, 0)
	default:
		b = append(req.AppendTo(nil), byte(4+g.rng.IntN(100)), 0, 0, 0)
	}
	return b
}

// natpmpLength: NAT-PMP mapping opcodes shorter than their 12 bytes, and
// public address requests with odd lengths (well-formed, but not mappings).
func (g *hostileGen) natpmpLength() []byte {
	if g.rng.IntN(4) == 0 {
		b := []byte{natpmp.Version, natpmp.OpPublicAddress}
		for range g.rng.IntN(30) {
			b = append(b, byte(g.rng.Uint32()))
		}
		return b
	}
	b := g.validNATPMP()
	return b[:2+g.rng.IntN(10)]
}

// isMapping reports whether b is a well-formed mapping request from src:
// a NAT-PMP datagram of version 0 with opcode 1 or 2 and at least 12 bytes
// (RFC 6886 ignores trailing bytes), or a PCP MAP request that parses
// without error and names src as the client.
func isMapping(b []byte, src netip.Addr) bool {
	if len(b) >= 12 && b[0] == natpmp.Version && (b[1] == natpmp.OpMapUDP || b[1] == natpmp.OpMapTCP) {
		return true
	}
	req, err := pcp.ParseRequest(b)
	return err == nil && req.Op == pcp.OpMap && req.ClientAddr.Unmap() == src
}

// next returns a datagram of class c. The classes are built to be
// malformed, but random bytes can by chance form a valid request, so every
// datagram is checked with isMapping and, if it is one, spoiled by setting
// the R bit (servers drop responses), which keeps "no lease changed" a
// strict check.
func (g *hostileGen) next(c int) []byte {
	b := hostileClasses[c].make(g)
	if isMapping(b, g.src) {
		b[1] |= pcp.ResponseBit
		g.fixed++
	}
	return b
}

// Flood bounds. The flood runs until it has sent floodPackets datagrams and
// lasted floodMinTime (so the good host makes many requests meanwhile),
// but never longer than floodMaxTime.
const (
	floodPackets = 100_000
	floodMinTime = 8 * time.Second
	floodMaxTime = 30 * time.Second
	// goodInterval paces the good host: about 8 requests a second, under
	// the default per-host rate limit (20/s, burst 40) even with
	// retransmissions.
	goodInterval = 120 * time.Millisecond
	// goodCreates bounds the mappings the good host creates during the
	// flood (max_per_host is raised above it); later steps renew them.
	goodCreates = 24
)

// TestHostileFlood: LAN host 0 floods dpfd with at least 100,000 malformed
// datagrams of every kind while LAN host 1 keeps creating and renewing
// mappings with PCP and NAT-PMP and LAN host 2 holds mappings it made
// before. Every request of host 1 is answered (retransmissions allowed);
// no lease of another host changes except host 1's renewals, the flooding
// host holds none, dpfd keeps its PID, and its counters show the flood.
// Once with the default rate limit (the flood is cut at the per-host
// limiter), once with the limit raised so that every datagram reaches the
// parsers.
func TestHostileFlood(t *testing.T) {
	needTools(t)
	for _, tc := range []struct {
		name    string
		limited bool
		extra   string
	}{
		{"rate-limited", true, ""},
		{"unlimited", false, "\toption rate_limit '1000000'\n\toption rate_burst '1000000'\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRouter(t, "nftables", 3)
			r.writeConfig("\toption max_per_host '64'\n\toption log_level 'info'\n" + tc.extra)
			r.start()
			pid := r.cmd.Process.Pid
			flooder, good, idle := lab.LANHost(0), lab.LANHost(1), lab.LANHost(2)

			// Leases before the flood: natpmpc and PCP, on the good
			// host (which renews them during the flood) and on an
			// idle host (which does not).
			goodTCP, _, err := r.natpmpc(1, "-a", "7000", "7000", "tcp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			for _, a := range [][]string{{"-a", "7100", "7100", "tcp", "3600"}, {"-a", "7101", "7101", "udp", "3600"}} {
				if _, _, err := r.natpmpc(2, a...); err != nil {
					t.Fatal(err)
				}
			}
			goodQ := newRequester(t, r.lab.LAN[1], good)
			idleQ := newRequester(t, r.lab.LAN[2], idle)
			goodNonce, idleNonce := [12]byte{1, 2, 3}, [12]byte{4, 5, 6}
			resp, _, err := goodQ.pcpMap(good, goodNonce, 6, 7001, 7001, 3600)
			if err != nil || resp.Result != pcp.ResultSuccess {
				t.Fatalf("good host PCP: %+v %v", resp, err)
			}
			goodPCP := resp.Map.ExternalPort
			if resp, _, err := idleQ.pcpMap(idle, idleNonce, 17, 7102, 7102, 3600); err != nil || resp.Result != pcp.ResultSuccess {
				t.Fatalf("idle host PCP: %+v %v", resp, err)
			}
			before := r.leases()
			if len(before) != 5 {
				t.Fatalf("%d leases before the flood, want 5: %+v", len(before), before)
			}
			stBefore := r.status()

			// The good host, in its own goroutine until the flood ends.
			stop := make(chan struct{})
			var wg sync.WaitGroup
			var goodMu sync.Mutex
			var goodErrs []string
			var goodDone, goodRetrans int
			wg.Add(1)
			go func() {
				defer wg.Done()
				fail := func(format string, a ...any) {
					goodMu.Lock()
					goodErrs = append(goodErrs, fmt.Sprintf(format, a...))
					goodMu.Unlock()
				}
				// record counts one request sent n times.
				record := func(n int) {
					goodMu.Lock()
					goodDone++
					goodRetrans += max(n-1, 0)
					goodMu.Unlock()
				}
				var created []uint16 // NAT-PMP UDP internal ports created
				extOf := map[uint16]uint16{}
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					case <-time.After(goodInterval):
					}
					var n int
					var err error
					switch i % 4 {
					case 0: // renew the natpmpc lease
						var resp natpmp.Response
						resp, n, err = goodQ.natpmpMap(natpmp.OpMapTCP, 7000, 7000, 3600)
						if err == nil && (resp.Result != natpmp.ResultSuccess || resp.ExternalPort != goodTCP || resp.Lifetime != 3600) {
							err = fmt.Errorf("NAT-PMP renewal answered %+v, want success on port %d", resp, goodTCP)
						}
					case 1: // renew the PCP lease
						var resp pcp.Response
						resp, n, err = goodQ.pcpMap(good, goodNonce, 6, 7001, 7001, 3600)
						if err == nil && (resp.Result != pcp.ResultSuccess || resp.Map.ExternalPort != goodPCP) {
							err = fmt.Errorf("PCP renewal answered %+v, want success on port %d", resp, goodPCP)
						}
					case 2: // create (or later renew) a NAT-PMP UDP mapping
						in := uint16(40000 + len(created))
						if len(created) >= goodCreates {
							in = created[i%len(created)]
						}
						var resp natpmp.Response
						resp, n, err = goodQ.natpmpMap(natpmp.OpMapUDP, in, in, 600)
						if err == nil {
							if resp.Result != natpmp.ResultSuccess || (extOf[in] != 0 && extOf[in] != resp.ExternalPort) {
								err = fmt.Errorf("NAT-PMP UDP %d answered %+v (earlier port %d)", in, resp, extOf[in])
							} else if extOf[in] == 0 {
								extOf[in] = resp.ExternalPort
								created = append(created, in)
							}
						}
					case 3: // create and release a PCP mapping
						nonce := [12]byte{9, byte(i), byte(i >> 8)}
						var resp pcp.Response
						resp, n, err = goodQ.pcpMap(good, nonce, 17, uint16(41000+i%1000), 0, 600)
						if err == nil && resp.Result != pcp.ResultSuccess {
							err = fmt.Errorf("PCP create answered %+v", resp)
						}
						if err == nil {
							record(n)
							resp, n, err = goodQ.pcpMap(good, nonce, 17, uint16(41000+i%1000), 0, 0)
							if err == nil && resp.Result != pcp.ResultSuccess {
								err = fmt.Errorf("PCP delete answered %+v", resp)
							}
						}
					}
					record(n)
					if err != nil {
						fail("request %d: %v", i, err)
					}
				}
			}()

			// The flood.
			var floodConn *net.UDPConn
			if err := lab.In(r.lab.LAN[0], func() error {
				var err error
				floodConn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: flooder.AsSlice()})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer floodConn.Close()
			seed := uint64(time.Now().UnixNano())
			t.Logf("flood seed %d", seed)
			gen := &hostileGen{rng: rand.New(rand.NewPCG(seed, 0x5eed)), src: flooder,
				others: []netip.Addr{good, idle, lab.RouterLAN, lab.Inet, netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("::ffff:198.51.100.250")}}
			dst := netip.AddrPortFrom(lab.RouterLAN, pcp.ServerPort)
			perClass := make([]int, len(hostileClasses))
			sent, sendErrs := 0, 0
			start := time.Now()
			for time.Since(start) < floodMaxTime && (sent < floodPackets || time.Since(start) < floodMinTime) {
				c := sent % len(hostileClasses)
				if _, err := floodConn.WriteToUDPAddrPort(gen.next(c), dst); err != nil {
					// ENOBUFS and the like: the flood outruns the
					// sender's own queue; keep going.
					sendErrs++
				}
				perClass[c]++
				sent++
			}
			floodTime := time.Since(start)
			close(stop)
			wg.Wait()
			t.Logf("flood: %d datagrams in %v (%d send errors, %d spoiled); good host: %d requests, %d retransmissions",
				sent, floodTime.Round(time.Millisecond), sendErrs, gen.fixed, goodDone, goodRetrans)
			for i, c := range hostileClasses {
				if perClass[i] == 0 {
					t.Errorf("class %s never sent", c.name)
				}
			}
			if sent-sendErrs < floodPackets {
				t.Fatalf("only %d datagrams sent, want at least %d", sent-sendErrs, floodPackets)
			}
			for _, e := range goodErrs {
				t.Error("good host: " + e)
			}
			if goodDone < int(floodMinTime/goodInterval)/4 {
				t.Errorf("good host made only %d requests during the flood", goodDone)
			}

			// dpfd survived, as the same process.
			if r.cmd.ProcessState != nil || syscall.Kill(pid, 0) != nil {
				t.Fatalf("dpfd (PID %d) is gone", pid)
			}
			if comm, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "comm")); err != nil || strings.TrimSpace(string(comm)) != "dpfd" {
				t.Fatalf("PID %d is no longer dpfd: %q %v", pid, comm, err)
			}
			st := r.status()
			if st.Uptime < stBefore.Uptime {
				t.Fatalf("dpfd restarted: uptime %v after %v", st.Uptime, stBefore.Uptime)
			}
			c := st.Counters
			seen := c["requests"] - stBefore.Counters["requests"]
			t.Logf("dpfd counters after the flood: %v; router UDP: %s", c, r.udpStats())
			if seen < uint64(sent)/10 {
				t.Errorf("dpfd received %d of %d datagrams", seen, sent)
			}
			if tc.limited {
				if rl := c["rate_limited"]; rl < seen*8/10 {
					t.Errorf("rate_limited %d of %d received; the flood was not cut at the limiter", rl, seen)
				}
			} else if d := c["dropped"] + c["error_responses"]; d < seen*8/10 {
				t.Errorf("dropped+error_responses %d of %d received", d, seen)
			}

			// The leases: those of hosts 1 and 2 from before are
			// unchanged (host 1's renewals aside), host 0 has none.
			after := r.leases()
			byKey := map[string]control.Lease{}
			for _, l := range after {
				byKey[l.Proto+"/"+strconv.Itoa(int(l.ExternalPort))] = l
				if l.Client == flooder.String() || l.InternalAddr == flooder.String() {
					t.Errorf("the flooding host holds a lease: %+v", l)
				}
				if l.Client != good.String() && l.Client != idle.String() {
					t.Errorf("lease of an unexpected client: %+v", l)
				}
			}
			for _, b := range before {
				a, ok := byKey[b.Proto+"/"+strconv.Itoa(int(b.ExternalPort))]
				if !ok {
					t.Errorf("lease gone after the flood: %+v", b)
					continue
				}
				if b.Client == good.String() {
					// Renewed: only the expiry moves.
					a.Expires, a.ExpiresIn, b.Expires, b.ExpiresIn = time.Time{}, 0, time.Time{}, 0
				} else {
					a.ExpiresIn, b.ExpiresIn = 0, 0
				}
				if fmt.Sprint(a) != fmt.Sprint(b) {
					t.Errorf("lease changed by the flood:\nbefore %+v\nafter  %+v", b, a)
				}
			}
		})
	}
}

// status calls dpfd's status method.
func (r *router) status() control.Status {
	r.t.Helper()
	var st control.Status
	if err := control.Call(filepath.Join(r.dir, "dpfd.sock"), control.MethodStatus, nil, &st); err != nil {
		r.t.Fatalf("status: %v", err)
	}
	return st
}

// udpStats returns the router namespace's UDP counters (/proc/net/snmp),
// for the log: RcvbufErrors counts datagrams the kernel dropped because
// dpfd's socket buffer was full.
func (r *router) udpStats() string {
	out, err := r.lab.Output(5*time.Second, r.lab.Router, "cat", "/proc/net/snmp")
	if err != nil {
		return err.Error()
	}
	var names, values []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if f := strings.Fields(sc.Text()); len(f) > 1 && f[0] == "Udp:" {
			if names == nil {
				names = f[1:]
			} else {
				values = f[1:]
			}
		}
	}
	var parts []string
	for i := range min(len(names), len(values)) {
		parts = append(parts, names[i]+"="+values[i])
	}
	return strings.Join(parts, " ")
}

// TestQuotaExhaustion: once a host holds max_per_host leases (6 in the
// test configuration), a new PCP mapping gets USER_EX_QUOTA with a short
// error lifetime and a new NAT-PMP mapping "out of resources" (4); its
// renewals still succeed, another host is not affected, and releasing one
// lease makes room again.
func TestQuotaExhaustion(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 2)
	r.start()
	host := lab.LANHost(0)
	q := newRequester(t, r.lab.LAN[0], host)
	nonce := func(i int) [12]byte { return [12]byte{0xa0, byte(i)} }
	for i := range 6 {
		resp, _, err := q.pcpMap(host, nonce(i), 6, uint16(9000+i), 0, 600)
		if err != nil || resp.Result != pcp.ResultSuccess {
			t.Fatalf("mapping %d: %+v %v", i, resp, err)
		}
	}
	resp, _, err := q.pcpMap(host, nonce(6), 6, 9006, 0, 600)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Result != pcp.ResultUserExQuota {
		t.Fatalf("seventh PCP mapping: result %s, want USER_EX_QUOTA", pcp.ResultString(resp.Result))
	}
	if pcp.IsLongLifetimeError(resp.Result) || resp.Lifetime == 0 || resp.Lifetime > 30*60 {
		t.Errorf("USER_EX_QUOTA with lifetime %d s; want a short error lifetime", resp.Lifetime)
	}
	nresp, _, err := q.natpmpMap(natpmp.OpMapUDP, 9100, 0, 600)
	if err != nil || nresp.Result != natpmp.ResultOutOfResources {
		t.Fatalf("seventh mapping over NAT-PMP: %+v %v; want result 4 (out of resources)", nresp, err)
	}
	// A renewal is not a new lease.
	if resp, _, err := q.pcpMap(host, nonce(0), 6, 9000, 0, 600); err != nil || resp.Result != pcp.ResultSuccess {
		t.Fatalf("renewal at the quota: %+v %v", resp, err)
	}
	// The quota is per host.
	other := newRequester(t, r.lab.LAN[1], lab.LANHost(1))
	if nresp, _, err := other.natpmpMap(natpmp.OpMapUDP, 9100, 0, 600); err != nil || nresp.Result != natpmp.ResultSuccess {
		t.Fatalf("other host: %+v %v", nresp, err)
	}
	// Release one, and there is room again.
	if resp, _, err := q.pcpMap(host, nonce(5), 6, 9005, 0, 0); err != nil || resp.Result != pcp.ResultSuccess {
		t.Fatalf("release: %+v %v", resp, err)
	}
	if nresp, _, err := q.natpmpMap(natpmp.OpMapUDP, 9100, 0, 600); err != nil || nresp.Result != natpmp.ResultSuccess {
		t.Fatalf("after a release: %+v %v", nresp, err)
	}
	n := 0
	for _, l := range r.leases() {
		if l.Client == host.String() {
			n++
		}
	}
	if n != 6 {
		t.Fatalf("host holds %d leases, want 6", n)
	}
	if st := r.status(); st.Counters["refused"] < 2 {
		t.Errorf("refused counter %d, want at least 2", st.Counters["refused"])
	}
}

// routerListener is a service of the router itself, in the router
// namespace: a TCP listener that greets every connection with banner, or
// a UDP socket.
type routerListener struct {
	ln net.Listener
	pc net.PacketConn
}

func (l routerListener) Close() {
	if l.ln != nil {
		l.ln.Close()
	}
	if l.pc != nil {
		l.pc.Close()
	}
}

func (r *router) listenInRouter(t *testing.T, network, addr, banner string) routerListener {
	t.Helper()
	var l routerListener
	err := lab.In(r.lab.Router, func() error {
		var err error
		if network == "tcp4" {
			l.ln, err = net.Listen(network, addr)
		} else {
			l.pc, err = net.ListenPacket(network, addr)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.Close)
	if l.ln != nil {
		go func() {
			for {
				c, err := l.ln.Accept()
				if err != nil {
					return
				}
				c.Write([]byte(banner))
				c.Close()
			}
		}()
	}
	return l
}

// TestRouterServicePorts: with a rule that lets every LAN host map any
// external port, the ports the router itself serves are never handed out:
// those it listens on (wildcard or WAN address; found in /proc/net) and
// those of option reserved_ports. A request suggesting one gets another
// port, or CANNOT_PROVIDE_EXTERNAL with PREFER_FAILURE; the router's
// service still answers from the internet.
func TestRouterServicePorts(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 1)
	const allowAll = "config rule 'all'\n\toption action 'allow'\n\tlist int_addr 'lan'\n\toption ext_ports '1-65535'\n"
	r.writeConfig("\toption max_per_host '64'\n\tlist reserved_ports '8443/tcp'\n\tlist reserved_ports '6000-6001/udp'\n" + allowAll)
	r.listenInRouter(t, "tcp4", "0.0.0.0:22", "SSH-2.0-router\r\n")
	r.listenInRouter(t, "tcp4", lab.RouterWAN.String()+":443", "router-https")
	r.listenInRouter(t, "udp4", "0.0.0.0:53", "")
	r.listenInRouter(t, "tcp4", lab.RouterLAN.String()+":8081", "lan-only")
	temp := r.listenInRouter(t, "tcp4", "0.0.0.0:2222", "temporary")
	r.start()
	host := lab.LANHost(0)
	q := newRequester(t, r.lab.LAN[0], host)

	mapNATPMP := func(op uint8, in, ext uint16) uint16 {
		t.Helper()
		resp, _, err := q.natpmpMap(op, in, ext, 600)
		if err != nil || resp.Result != natpmp.ResultSuccess {
			t.Fatalf("NAT-PMP %d->%d: %+v %v", in, ext, resp, err)
		}
		return resp.ExternalPort
	}
	for _, c := range []struct {
		op      uint8
		in, ext uint16
		what    string
	}{
		{natpmp.OpMapTCP, 22, 22, "ssh listener on the wildcard address"},
		{natpmp.OpMapTCP, 2443, 443, "listener on the WAN address"},
		{natpmp.OpMapUDP, 53, 53, "UDP socket on the wildcard address"},
		{natpmp.OpMapTCP, 2222, 2222, "listener on the wildcard address"},
		{natpmp.OpMapTCP, 8443, 8443, "reserved_ports 8443/tcp"},
		{natpmp.OpMapUDP, 6001, 6001, "reserved_ports 6000-6001/udp"},
	} {
		if got := mapNATPMP(c.op, c.in, c.ext); got == c.ext {
			t.Errorf("external port %d (%s) was handed out", c.ext, c.what)
		}
	}
	// natpmpc, as a user would try it.
	if got, out, err := r.natpmpc(0, "-a", "3443", "443", "tcp", "600"); err != nil || got == 443 {
		t.Errorf("natpmpc for port 443: got %d, %v\n%s", got, err, out)
	}
	// PCP with PREFER_FAILURE: refused outright.
	resp, _, err := q.pcpMap(host, [12]byte{7}, 6, 2022, 22, 600, pcp.PreferFailureOption())
	if err != nil || resp.Result != pcp.ResultCannotProvideExternal {
		t.Errorf("PCP for port 22 with PREFER_FAILURE: %+v %v; want CANNOT_PROVIDE_EXTERNAL", resp, err)
	}
	// What is not the router's to keep can be had: a listener on the LAN
	// address only, TCP 53 (only UDP 53 is served), a port below 1024.
	for _, c := range []struct {
		op      uint8
		in, ext uint16
	}{{natpmp.OpMapTCP, 8081, 8081}, {natpmp.OpMapTCP, 53, 53}, {natpmp.OpMapTCP, 25, 25}} {
		if got := mapNATPMP(c.op, c.in, c.ext); got != c.ext {
			t.Errorf("port %d/%d: got %d, want it granted", c.op, c.ext, got)
		}
	}
	// The router's ssh still answers from the internet.
	err = lab.In(r.lab.Inet, func() error {
		c, err := net.DialTimeout("tcp4", netip.AddrPortFrom(lab.RouterWAN, 22).String(), connTimeout)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(connTimeout))
		b := make([]byte, 64)
		n, _ := c.Read(b)
		if !strings.HasPrefix(string(b[:n]), "SSH-2.0-router") {
			return fmt.Errorf("port 22 answered %q, not the router's ssh", b[:n])
		}
		return nil
	})
	if err != nil {
		t.Errorf("the router's ssh from the internet: %v", err)
	}

	// The listener on 2222 goes away: within a reading's lifetime
	// (1 s) the port can be had.
	temp.Close()
	deadline := time.Now().Add(10 * time.Second)
	for in := uint16(3222); ; in++ {
		if mapNATPMP(natpmp.OpMapTCP, in, 2222) == 2222 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("port 2222 still refused 10 s after its listener closed")
		}
		time.Sleep(300 * time.Millisecond)
	}

	// Reload without reserved_ports: the default list applies (80/tcp),
	// and 8443/tcp is free again.
	r.writeConfig("\toption max_per_host '64'\n" + allowAll)
	if out, err := r.dpfd("reload"); err != nil {
		t.Fatalf("reload: %v\n%s", err, out)
	}
	if got := mapNATPMP(natpmp.OpMapTCP, 80, 80); got == 80 {
		t.Error("port 80 (default reserved_ports) was handed out")
	}
	if got := mapNATPMP(natpmp.OpMapTCP, 8444, 8443); got != 8443 {
		t.Errorf("port 8443 after the reload: got %d", got)
	}
	for _, l := range r.leases() {
		if l.ExternalPort == 22 || l.ExternalPort == 443 || l.ExternalPort == 80 || (l.Proto == "udp" && l.ExternalPort == 53) {
			t.Errorf("lease on a router port: %+v", l)
		}
	}
}
