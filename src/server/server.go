// Package server answers PCP (RFC 6887) and NAT-PMP (RFC 6886) requests on
// UDP port 5351 of the LAN interfaces and turns them into lease operations.
//
// Both protocols share the port: the first octet of a datagram is its
// version, 0 for NAT-PMP and 2 for PCP. [Server.Handle] is the whole
// request-to-response logic, with no sockets, so that it can be tested
// directly; [Server.Serve] adds the sockets.
package server

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/lease"
)

// Config configures a Server. Zero values mean the documented defaults.
type Config struct {
	// LANInterfaces are the interfaces whose IPv4 addresses the server
	// listens on. Requests arriving on any other interface are never seen.
	LANInterfaces []string
	// ExtraListen are further addresses to listen on (tests and loopback
	// set-ups); normally empty.
	ExtraListen []netip.AddrPort
	Manager     *lease.Manager // required
	// ExternalAddr returns the current external (WAN) IPv4 address; an
	// invalid address means the WAN is down (NETWORK_FAILURE).
	ExternalAddr func() netip.Addr
	// RateLimit is the number of requests per second one source host may
	// send (tokens), RateBurst the bucket size. Defaults 20 and 40.
	RateLimit float64
	RateBurst int
	// EpochBase is the epoch, in seconds, at which this process starts
	// counting (non-zero when lease state was restored).
	EpochBase uint32
	// NoAnnounce turns off the unsolicited announcements a LAN socket
	// sends when it opens; AnnounceAddr overrides where they go (default
	// DefaultAnnounceAddr, 224.0.0.1:5350).
	NoAnnounce   bool
	AnnounceAddr netip.AddrPort
	// AuthMode and AuthKeys set up authenticated requests (auth.go);
	// the zero AuthMode is AuthOff. Invalid keys are logged and left
	// out (see SetAuth). AuthSeqs are the highest AUTH sequence numbers
	// saved by the previous run (see Server.AuthSeqs): requests at or
	// below them are replays.
	AuthMode AuthMode
	AuthKeys []Key
	AuthSeqs map[[8]byte]uint64
	Clock    clock.Clock  // nil: real clock
	Logger   *slog.Logger // nil: discard
}

// Stats counts datagrams since start.
type Stats struct {
	Received    uint64 `json:"received"`
	Answered    uint64 `json:"answered"`
	Dropped     uint64 `json:"dropped"`
	RateLimited uint64 `json:"rate_limited"`
	Errors      uint64 `json:"error_responses"`
	PCP         uint64 `json:"pcp"`
	NATPMP      uint64 `json:"natpmp"`
}

// Server is a PCP and NAT-PMP server. Create it with New.
type Server struct {
	cfg     Config
	clk     clock.Clock
	log     *slog.Logger
	m       *lease.Manager
	started time.Time
	limiter *limiter
	auth    *authenticator
	// epochReset is when the epoch last started again at 0 (nil: never;
	// see epoch.go); announceGen numbers the announcement rounds.
	epochReset  atomic.Pointer[time.Time]
	announceGen atomic.Uint64

	stats struct {
		received, answered, dropped, rateLimited, errors, pcp, natpmp atomic.Uint64
	}

	mu    sync.Mutex
	socks map[netip.AddrPort]*socket // guarded by mu
	wg    sync.WaitGroup
}

// Defaults for Config's zero values.
const (
	DefaultRateLimit = 20
	DefaultRateBurst = 40
)

// New returns a Server; it does not open sockets until Serve.
func New(cfg Config) *Server {
	if cfg.RateLimit <= 0 {
		cfg.RateLimit = DefaultRateLimit
	}
	if cfg.RateBurst <= 0 {
		cfg.RateBurst = DefaultRateBurst
	}
	if cfg.ExternalAddr == nil {
		cfg.ExternalAddr = func() netip.Addr { return netip.Addr{} }
	}
	s := &Server{cfg: cfg, clk: cfg.Clock, log: cfg.Logger, m: cfg.Manager, socks: map[netip.AddrPort]*socket{}}
	if s.clk == nil {
		s.clk = clock.Real{}
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.started = s.clk.Now()
	s.limiter = newLimiter(cfg.RateLimit, cfg.RateBurst)
	s.auth = newAuthenticator(cfg.AuthSeqs)
	if err := s.SetAuth(cfg.AuthMode, cfg.AuthKeys); err != nil {
		// Fail closed: the mode stays, with no key to satisfy it.
		s.log.Error("authentication keys refused", "err", err)
		s.SetAuth(cfg.AuthMode, nil)
	}
	return s
}

// Epoch returns the current epoch in seconds (RFC 6887 section 8.5, RFC 6886
// section 3.6): the seconds since this server's state began, continuing
// across a restart whose leases were restored, and starting again at 0 when
// the external address changes (ResetEpoch, epoch.go).
func (s *Server) Epoch() uint32 {
	base, since := s.cfg.EpochBase, s.started
	if r := s.epochReset.Load(); r != nil {
		base, since = 0, *r
	}
	return base + uint32(s.clk.Now().Sub(since)/time.Second)
}

// Stats returns the datagram counters.
func (s *Server) Stats() Stats {
	return Stats{
		Received:    s.stats.received.Load(),
		Answered:    s.stats.answered.Load(),
		Dropped:     s.stats.dropped.Load(),
		RateLimited: s.stats.rateLimited.Load(),
		Errors:      s.stats.errors.Load(),
		PCP:         s.stats.pcp.Load(),
		NATPMP:      s.stats.natpmp.Load(),
	}
}

// Handle processes one datagram from src and returns the response to send
// back, or nil to send nothing. It is safe for concurrent use.
func (s *Server) Handle(pkt []byte, src netip.AddrPort) []byte {
	s.stats.received.Add(1)
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if len(pkt) == 0 {
		s.stats.dropped.Add(1)
		return nil
	}
	if !s.limiter.allow(src.Addr(), s.clk.Now()) {
		s.stats.rateLimited.Add(1)
		return nil
	}
	var resp []byte
	var isErr bool
	if pkt[0] == 0 {
		s.stats.natpmp.Add(1)
		resp, isErr = s.handleNATPMP(pkt, src)
	} else {
		s.stats.pcp.Add(1)
		resp, isErr = s.handlePCP(pkt, src)
	}
	switch {
	case resp == nil:
		s.stats.dropped.Add(1)
	case isErr:
		s.stats.errors.Add(1)
		s.stats.answered.Add(1)
	default:
		s.stats.answered.Add(1)
	}
	return resp
}

// errIs reports whether err matches any of targets.
func errIs(err error, targets ...error) bool {
	for _, t := range targets {
		if errors.Is(err, t) {
			return true
		}
	}
	return false
}
