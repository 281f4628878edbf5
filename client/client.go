package client

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/pcp"
)

// Defaults for Config's zero values.
const (
	// DefaultLifetime is the requested mapping lifetime, the value RFC
	// 6886 section 3.3 recommends.
	DefaultLifetime = 2 * time.Hour
	// DefaultMaxJitter bounds the random delay before mappings are
	// re-created after the gateway lost them: "a random amount of time
	// between 0 and 5 seconds" (RFC 6887 section 14.1.3), so that the
	// hosts of a LAN do not all ask at once.
	DefaultMaxJitter = 5 * time.Second
	// ReleaseTimeout bounds Close and the releases done without a
	// deadline: a gateway that does not answer within it is left alone
	// and its leases lapse when their lifetime ends.
	ReleaseTimeout = 2 * time.Second
)

// defaultAnnounceAddr is where PCP ANNOUNCE (RFC 6887 section 14.1.3) and
// NAT-PMP address notices (RFC 6886 section 3.2.1) arrive: the all-hosts
// group, of which every IPv4 host is a member without joining (RFC 1112),
// port 5350.
var defaultAnnounceAddr = netip.AddrPortFrom(netip.AddrFrom4([4]byte{224, 0, 0, 1}), pcp.ClientPort)

// Pacing of the attempts to re-create a mapping the gateway does not hold
// (refused, expired or lost): doubling from retryMin to retryMax, never
// sooner than a PCP error's lifetime asks, which is itself capped at
// maxErrorWait so that a changed policy on the gateway is noticed within
// half an hour. recreateTimeout bounds one attempt: PCP retransmits without
// limit (RFC 6887 section 8.1.1), so an attempt needs a bound of its own.
const (
	retryMin        = 5 * time.Second
	retryMax        = 5 * time.Minute
	maxErrorWait    = 30 * time.Minute
	recreateTimeout = time.Minute
)

// Config configures a Client. The zero Config discovers the gateway, tries
// PCP then NAT-PMP, and requests two-hour mappings.
type Config struct {
	// Gateway is the PCP/NAT-PMP server's address and port. The zero
	// value means the gateway of the default IPv4 route (read from
	// /proc/net/route on Linux, re-read before each request, so a changed
	// default route moves the mappings to the new gateway) on port 5351.
	Gateway netip.AddrPort
	// Force is "" to try PCP and fall back to NAT-PMP when the gateway
	// answers "unsupported version", "pcp" to speak PCP only, or "natpmp"
	// to speak NAT-PMP only (case does not matter).
	Force string
	// Lifetime is the requested lifetime of mappings whose MapRequest
	// does not give one; zero means DefaultLifetime. The gateway may grant
	// less or more; the granted lifetime drives renewal.
	Lifetime time.Duration
	// Description is sent as the PCP DESCRIPTION option (RFC 7220) for
	// mappings whose MapRequest has none; "" sends no option. NAT-PMP has
	// no such field.
	Description string
	// AnnounceAddr is the UDP address to receive gateway announcements
	// on; the zero value means 224.0.0.1:5350. The socket is bound with
	// SO_REUSEADDR and SO_REUSEPORT so that every process on the host can
	// listen. If it cannot be bound the Client logs at debug level and
	// relies on renewals alone.
	AnnounceAddr netip.AddrPort
	// DisableAnnounce turns the announcement listener off.
	DisableAnnounce bool
	// InitialRetransmit is the first retransmission timeout; zero means
	// the RFC value: 3 s for PCP (RFC 6887 section 8.1.1), 250 ms for
	// NAT-PMP (RFC 6886 section 3.1). Later timeouts double from it.
	InitialRetransmit time.Duration
	// MaxJitter bounds the random delay before mappings are re-created
	// after state loss; zero means DefaultMaxJitter.
	MaxJitter time.Duration
	// Key, when set, authenticates every PCP request with DPF's AUTH
	// option (see auth.go): pcp.MinAuthKeyLen to pcp.MaxAuthKeyLen bytes,
	// the secret of a "config key" section on the gateway (dpfd genkey
	// makes one; pcp.ParseAuthKey reads its text form). Answers must be
	// signed with it. The client then speaks PCP only, never NAT-PMP nor
	// unsigned PCP; a gateway that does not support the option makes
	// requests fail with ErrAuthUnsupported. Force "natpmp" with a Key is
	// an error. New copies the key.
	Key []byte
	// Logger receives debug and info logs; nil discards them.
	Logger *slog.Logger
	// Now is the clock used for the epoch check and for Expiry; nil means
	// time.Now. Timers still wait real durations.
	Now func() time.Time
}

// Client talks PCP or NAT-PMP to one gateway and keeps the mappings made
// through it alive. Create it with New; it is safe for concurrent use.
//
// A Client owns a goroutine per live mapping (renewal and re-creation) and
// one listening for gateway announcements; Close stops them all.
type Client struct {
	cfg      Config
	force    string  // "", PCP or NATPMP
	sig      *signer // nil without Config.Key
	log      *slog.Logger
	now      func() time.Time
	discover func() (netip.Addr, error)

	// Timing knobs, set from the constants above; tests shorten them.
	retryMin, retryMax, recreateTimeout, releaseTimeout time.Duration

	ctx    context.Context // ends when Close has released the mappings
	cancel context.CancelFunc
	wg     sync.WaitGroup // mapping goroutines and the announce listener

	mu         sync.Mutex
	closed     bool
	gw         netip.AddrPort // current gateway; zero until known
	proto      string         // protocol the gateway speaks: PCP, NATPMP or "" (not probed)
	epoch      epochTracker
	extAddr    netip.Addr // the external address the gateway last reported
	mappings   map[*Mapping]struct{}
	annStarted bool
	ann        net.PacketConn // announcement socket, nil if none
}

// New returns a Client for cfg. It does no I/O: the gateway is discovered
// and probed on first use. It fails only for an invalid Config.
func New(cfg Config) (*Client, error) {
	var force string
	switch strings.ToLower(cfg.Force) {
	case "":
	case "pcp":
		force = PCP
	case "natpmp", "nat-pmp":
		force = NATPMP
	default:
		return nil, fmt.Errorf("client: unknown protocol %q in Config.Force (want \"\", \"pcp\" or \"natpmp\")", cfg.Force)
	}
	if cfg.Lifetime < 0 || cfg.InitialRetransmit < 0 || cfg.MaxJitter < 0 {
		return nil, errors.New("client: negative duration in Config")
	}
	var sig *signer
	if cfg.Key != nil {
		if force == NATPMP {
			return nil, errors.New("client: Config.Key needs PCP: NAT-PMP cannot authenticate requests")
		}
		var err error
		if sig, err = newSigner(cfg.Key); err != nil {
			return nil, err
		}
		cfg.Key = sig.key
		force = PCP // never fall back to NAT-PMP
	}
	c := &Client{
		cfg:             cfg,
		force:           force,
		sig:             sig,
		log:             cfg.Logger,
		now:             cfg.Now,
		discover:        discoverGateway,
		retryMin:        retryMin,
		retryMax:        retryMax,
		recreateTimeout: recreateTimeout,
		releaseTimeout:  ReleaseTimeout,
		mappings:        map[*Mapping]struct{}{},
		gw:              cfg.Gateway,
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

// Close releases every mapping at the gateway, waiting at most
// ReleaseTimeout in all, then stops the Client's goroutines. Mappings the
// gateway did not confirm deleting lapse at the end of their lifetime.
// After Close, Map and the other requests return ErrClosed. Close is
// idempotent; only the first call reports release failures.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	ms := make([]*Mapping, 0, len(c.mappings))
	for m := range c.mappings {
		ms = append(ms, m)
	}
	ann := c.ann
	c.mu.Unlock()
	if ann != nil {
		ann.Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.releaseTimeout)
	defer cancel()
	errs := make([]error, len(ms))
	var wg sync.WaitGroup
	for i, m := range ms {
		wg.Go(func() { errs[i] = m.Release(ctx) })
	}
	wg.Wait()
	c.cancel()
	c.wg.Wait()
	return errors.Join(errs...)
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Gateway returns the gateway's address and port: Config.Gateway, or the
// default route's gateway on port 5351. It fails with ErrNoGateway when
// there is no default route.
func (c *Client) Gateway(ctx context.Context) (netip.AddrPort, error) {
	if c.isClosed() {
		return netip.AddrPort{}, fmt.Errorf("client: gateway: %w", ErrClosed)
	}
	gw, err := c.gateway(nil)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("client: gateway: %w", err)
	}
	return gw, nil
}

// gateway returns the current gateway, re-discovering it unless configured.
// When the discovered gateway changed, the protocol and epoch are forgotten
// and every mapping but self is re-created at the new one.
func (c *Client) gateway(self *Mapping) (netip.AddrPort, error) {
	if c.cfg.Gateway.IsValid() {
		return c.cfg.Gateway, nil
	}
	a, err := c.discover()
	if err != nil {
		return netip.AddrPort{}, err
	}
	gw := netip.AddrPortFrom(a, pcp.ServerPort)
	c.mu.Lock()
	changed := c.gw.IsValid() && c.gw != gw
	old := c.gw
	c.gw = gw
	if changed {
		c.proto = ""
		c.epoch.reset()
		c.extAddr = netip.Addr{}
	}
	c.mu.Unlock()
	if changed {
		c.log.Info("gateway changed; re-creating mappings", "old", old.String(), "new", gw.String())
		c.stateLost(self)
	}
	return gw, nil
}

// knownGateway returns the gateway last used, without discovery.
func (c *Client) knownGateway() netip.AddrPort {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.gw
}

// currentProto returns the protocol to use: forced, learned, or "" when
// PCP should be probed.
func (c *Client) currentProto() string {
	if c.force != "" {
		return c.force
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.proto
}

// setProto remembers that gw speaks proto. A switch between the two
// protocols forgets the epoch, which the other protocol's server may count
// differently.
func (c *Client) setProto(gw netip.AddrPort, proto string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gw.IsValid() && c.gw != gw {
		return // the gateway changed meanwhile
	}
	if c.proto != proto {
		if c.proto != "" {
			c.epoch.reset()
		}
		c.log.Debug("gateway protocol", "gateway", gw.String(), "protocol", proto)
		c.proto = proto
	}
}

// irt returns the initial retransmission timeout for proto.
func (c *Client) irt(proto string) time.Duration {
	if c.cfg.InitialRetransmit > 0 {
		return c.cfg.InitialRetransmit
	}
	if proto == NATPMP {
		return natpmpIRT
	}
	return pcpIRT
}

func (c *Client) maxJitter() time.Duration {
	if c.cfg.MaxJitter > 0 {
		return c.cfg.MaxJitter
	}
	return DefaultMaxJitter
}

// observe runs the epoch check on an answer and, on state loss, schedules
// the re-creation of every mapping but self. It reports loss.
func (c *Client) observe(ans answer, rule epochRule, self *Mapping) bool {
	if !ans.have {
		return false
	}
	c.mu.Lock()
	lost := c.epoch.observe(ans.epoch, ans.at, rule)
	if lost {
		// The gateway restarted: it may speak PCP now, and may have
		// another external address.
		if c.force == "" && c.proto == NATPMP {
			c.proto = ""
		}
		c.extAddr = netip.Addr{}
	}
	c.mu.Unlock()
	if lost {
		c.log.Info("gateway lost its state; re-creating mappings", "epoch", ans.epoch)
		c.stateLost(self)
	}
	return lost
}

// stateLost marks every mapping but self lost and schedules its
// re-creation after a random delay of up to MaxJitter.
func (c *Client) stateLost(self *Mapping) {
	for _, m := range c.liveMappings() {
		if m != self {
			m.markLost(ErrStateLost, rand.N(c.maxJitter()))
		}
	}
}

func (c *Client) liveMappings() []*Mapping {
	c.mu.Lock()
	defer c.mu.Unlock()
	ms := make([]*Mapping, 0, len(c.mappings))
	for m := range c.mappings {
		ms = append(ms, m)
	}
	return ms
}

// request performs one MAP exchange for p, choosing the protocol (PCP
// first, NAT-PMP after an "unsupported version" answer unless forced) and
// running the epoch check. self is the mapping the request is for, nil for
// none.
func (c *Client) request(ctx context.Context, p mapParams, self *Mapping) (answer, error) {
	gw, err := c.gateway(self)
	if err != nil {
		return answer{}, err
	}
	proto := c.currentProto()
	if proto != NATPMP {
		ans, err := pcpMap(ctx, gw, c.irt(PCP), c.now, c.sig, p)
		if !unsuppVersion(err) || c.force == PCP {
			if proto == "" && (err == nil || errors.As(err, new(*ResultError))) {
				c.setProto(gw, PCP)
			}
			if ans.external.IsValid() {
				c.setExternal(ans.external.Addr())
			}
			ans.lost = c.observe(ans, rulePCP, self)
			return ans, err
		}
		c.log.Debug("gateway does not speak PCP; falling back to NAT-PMP", "gateway", gw.String())
		c.setProto(gw, NATPMP)
	}
	ext, err := c.natpmpExternal(ctx, gw, self)
	if err != nil {
		return answer{}, err
	}
	ans, err := natpmpMap(ctx, gw, c.irt(NATPMP), c.now, p)
	ans.lost = c.observe(ans, ruleNATPMP, self)
	if err == nil && p.lifetime > 0 {
		ans.external = netip.AddrPortFrom(ext, ans.external.Port())
	}
	return ans, err
}

// natpmpExternal returns the gateway's external address, asking for it
// (RFC 6886 section 3.2) when not known yet. NAT-PMP mapping responses do
// not carry it.
func (c *Client) natpmpExternal(ctx context.Context, gw netip.AddrPort, self *Mapping) (netip.Addr, error) {
	c.mu.Lock()
	ext := c.extAddr
	c.mu.Unlock()
	if ext.IsValid() {
		return ext, nil
	}
	ans, err := natpmpPublicAddr(ctx, gw, c.irt(NATPMP), c.now)
	c.observe(ans, ruleNATPMP, self)
	if err != nil {
		return netip.Addr{}, err
	}
	c.setExternal(ans.external.Addr())
	return ans.external.Addr(), nil
}

// setExternal records the external address and reports whether it changed
// from a known different one.
func (c *Client) setExternal(a netip.Addr) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	changed := c.extAddr.IsValid() && c.extAddr != a
	c.extAddr = a
	return changed
}

// Protocol returns the protocol the gateway speaks, PCP or NATPMP. Unless
// Config.Force decides it or an earlier request learned it, it probes the
// gateway with a PCP ANNOUNCE request (RFC 6887 section 14.1), which creates
// nothing.
func (c *Client) Protocol(ctx context.Context) (string, error) {
	if c.isClosed() {
		return "", fmt.Errorf("client: protocol: %w", ErrClosed)
	}
	// With Config.Key the protocol is PCP (forced): nothing is probed.
	// Whether the gateway supports authentication shows in the first
	// MAP, which every gateway answers (miniupnpd ignores an ANNOUNCE
	// carrying an option).
	if p := c.currentProto(); p != "" {
		return p, nil
	}
	gw, err := c.gateway(nil)
	if err != nil {
		return "", fmt.Errorf("client: protocol: %w", err)
	}
	ans, err := pcpAnnounce(ctx, gw, c.irt(PCP), c.now)
	if unsuppVersion(err) {
		c.setProto(gw, NATPMP)
		return NATPMP, nil
	}
	if err != nil && !errors.As(err, new(*ResultError)) {
		return "", fmt.Errorf("client: protocol: %w", err)
	}
	c.setProto(gw, PCP)
	c.observe(ans, rulePCP, nil)
	return PCP, nil
}

// probeLifetime is the lifetime asked for the mapping ExternalAddr creates
// to learn the address over PCP. It is deleted at once; the lifetime only
// matters if the deletion is lost. Servers commonly raise anything shorter
// to two minutes (dpfd's minimum).
const probeLifetime = 120 // seconds

// ExternalAddr returns the gateway's external IPv4 address.
//
// With NAT-PMP it asks the gateway (RFC 6886 section 3.2). PCP has no such
// request, so it returns the external address of a live mapping of this
// Client if there is one; otherwise it maps a UDP port it holds open for the
// purpose (so that nothing else can be exposed by it) for probeLifetime,
// reads the address from the response and deletes the mapping at once.
func (c *Client) ExternalAddr(ctx context.Context) (netip.Addr, error) {
	proto, err := c.Protocol(ctx)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
	}
	gw, err := c.gateway(nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
	}
	if proto == NATPMP {
		ans, err := natpmpPublicAddr(ctx, gw, c.irt(NATPMP), c.now)
		c.observe(ans, ruleNATPMP, nil)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
		}
		c.setExternal(ans.external.Addr())
		return ans.external.Addr(), nil
	}
	for _, m := range c.liveMappings() {
		if ext := m.External(); ext.IsValid() {
			return ext.Addr(), nil
		}
	}
	hold, err := net.ListenUDP("udp4", nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
	}
	defer hold.Close()
	p := mapParams{proto: UDP, port: hold.LocalAddr().(*net.UDPAddr).AddrPort().Port(), lifetime: probeLifetime}
	if _, err := readNonce(&p.nonce); err != nil {
		return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
	}
	ans, err := c.request(ctx, p, nil)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("client: external address: %w", err)
	}
	p.lifetime = 0
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), c.releaseTimeout)
	defer cancel()
	if _, err := c.request(dctx, p, nil); err != nil {
		c.log.Debug("deleting the external-address probe mapping", "err", err)
	}
	return ans.external.Addr(), nil
}

// register adds m to the live mappings and starts its goroutine, unless the
// Client is closed.
func (c *Client) register(m *Mapping) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return false
	}
	c.mappings[m] = struct{}{}
	c.wg.Add(1)
	go m.run()
	return true
}

func (c *Client) unregister(m *Mapping) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.mappings, m)
}
