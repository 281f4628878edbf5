package nattype

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// DefaultPort is the STUN port (the IANA "stun" service) used when
// Config.Server has none.
const DefaultPort = 3478

const (
	// DefaultMaxWait bounds one request and its retransmissions (three
	// requests at the default RTO). A filtered test costs this much, and
	// a NAT that filters costs two of them.
	DefaultMaxWait = 3 * time.Second
	// DefaultTimeout bounds the whole probe: two unanswered filtering
	// tests plus the answered ones fit with room to spare.
	DefaultTimeout = 10 * time.Second
)

// ErrNoServer means Config.Server is empty.
var ErrNoServer = errors.New("nattype: no STUN server configured")

// errBudget is the cause of the probe's own context when Config.Timeout
// runs out.
var errBudget = errors.New("probe time budget used up")

// Config configures Probe. The zero value of each field means its default;
// only Server is required.
type Config struct {
	// Server is the STUN server as "host:port" or "host" (port
	// DefaultPort). The behaviour tests need a server that supports RFC
	// 5780 (it answers with OTHER-ADDRESS); any STUN server yields the
	// mapped address. IPv4 is preferred when a name has both families,
	// unless LocalAddr says otherwise.
	Server string
	// LocalAddr is the local address for the mapping tests; zero means
	// any address and an ephemeral port. A non-zero port is used by the
	// mapping tests only: the filtering tests always take a fresh
	// ephemeral port on the same address (see the package
	// documentation for why).
	LocalAddr netip.AddrPort
	// RTO is the initial retransmission timeout; zero means DefaultRTO.
	RTO time.Duration
	// MaxWait bounds each request with its retransmissions; zero means
	// DefaultMaxWait.
	MaxWait time.Duration
	// Timeout bounds the whole probe; zero means DefaultTimeout. Tests
	// it cuts short report Unknown rather than fail the probe.
	Timeout time.Duration
	// Logger receives a debug record for every request and answer; nil
	// discards them.
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.RTO <= 0 {
		c.RTO = DefaultRTO
	}
	if c.MaxWait <= 0 {
		c.MaxWait = DefaultMaxWait
	}
	if c.Timeout <= 0 {
		c.Timeout = DefaultTimeout
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c
}

// Result is what Probe found out.
type Result struct {
	// Server is the primary address probed; OtherAddr is the server's
	// alternate address from OTHER-ADDRESS, zero if it sent none.
	Server, OtherAddr netip.AddrPort
	// Local is the local address of the mapping tests (the address the
	// kernel picks towards Server when bound to any); Mapped is the
	// address the server saw them come from (test I).
	Local, Mapped netip.AddrPort
	// NoNAT is true when Mapped equals Local: nothing translates. Mapping
	// is then EndpointIndependent and Filtering tells an open host
	// (EndpointIndependent) from a firewalled one.
	NoNAT bool
	// Mapping and Filtering are the RFC 5780 behaviours; when one is
	// Unknown, MappingReason or FilteringReason says why.
	Mapping, Filtering             Behavior
	MappingReason, FilteringReason string
}

// String summarises r on one line.
func (r *Result) String() string {
	if r == nil {
		return "<no result>"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "server %v", r.Server)
	if r.OtherAddr.IsValid() {
		fmt.Fprintf(&b, " (alternate %v)", r.OtherAddr)
	}
	fmt.Fprintf(&b, ": local %v, mapped %v; ", r.Local, r.Mapped)
	if r.NoNAT {
		b.WriteString("no NAT")
	} else {
		b.WriteString("mapping " + behaviorText(r.Mapping, r.MappingReason))
	}
	b.WriteString(", filtering " + behaviorText(r.Filtering, r.FilteringReason))
	return b.String()
}

func behaviorText(b Behavior, reason string) string {
	if b == Unknown && reason != "" {
		return fmt.Sprintf("%v (%s)", b, reason)
	}
	return b.String()
}

// Probe runs the RFC 5780 mapping and filtering tests against cfg.Server.
//
// It returns an error only when nothing could be learnt: the server cannot
// be resolved, no socket can be opened, test I goes unanswered, or ctx
// ends. Otherwise it returns a Result in which a behaviour that could not
// be determined (no RFC 5780 support, an unanswered mapping test, the time
// budget used up) is Unknown with a reason.
//
// Probe creates its sockets on the calling goroutine, so a caller that has
// moved its OS thread into another network namespace gets them there; it
// starts no goroutine that outlives it.
func Probe(ctx context.Context, cfg Config) (*Result, error) {
	cfg = cfg.withDefaults()
	log := cfg.Logger
	parent := ctx
	ctx, cancel := context.WithTimeoutCause(ctx, cfg.Timeout, errBudget)
	defer cancel()

	server, err := resolveServer(ctx, cfg.Server, cfg.LocalAddr)
	if err != nil {
		return nil, err
	}
	network := "udp6"
	if server.Addr().Is4() {
		network = "udp4"
	}
	if cfg.LocalAddr.IsValid() && cfg.LocalAddr.Addr().Unmap().Is4() != server.Addr().Is4() {
		return nil, fmt.Errorf("nattype: local address %v and server %v are of different families", cfg.LocalAddr, server)
	}

	mconn, err := listen(network, cfg.LocalAddr)
	if err != nil {
		return nil, err
	}
	defer mconn.Close()
	local, err := localAddr(network, mconn, server)
	if err != nil {
		return nil, err
	}
	res := &Result{Server: server, Local: local}
	ms := &session{conn: mconn, rto: cfg.RTO, maxWait: cfg.MaxWait, log: log}

	// Mapping test I (RFC 5780 section 4.3).
	r1, err := ms.roundTrip(ctx, server, server, changeRequest{})
	if err != nil {
		if perr := parent.Err(); perr != nil {
			return nil, perr
		}
		if ctx.Err() != nil {
			err = fmt.Errorf("%w within the probe's %v budget", ErrNoResponse, cfg.Timeout)
		}
		return nil, fmt.Errorf("nattype: binding request to %v: %w", server, err)
	}
	res.Mapped, res.OtherAddr = r1.Mapped, r1.Other
	res.NoNAT = isNoNAT(local, r1.Mapped)
	log.Debug("nattype: test I", "local", local, "mapped", r1.Mapped, "other", r1.Other, "nonat", res.NoNAT)
	if res.NoNAT {
		// Nothing translates, so every destination sees the local
		// address: tests II and III have nothing to add.
		res.Mapping = EndpointIndependent
	}
	if reason := checkOther(server, r1.Other); reason != "" {
		if !res.NoNAT {
			res.MappingReason = reason
		}
		res.FilteringReason = reason
		return res, nil
	}
	other := r1.Other

	if !res.NoNAT {
		var fatal error
		res.Mapping, res.MappingReason, fatal = mappingTests(parent, ctx, ms, server, other, r1.Mapped)
		if fatal != nil {
			return nil, fatal
		}
	}
	mconn.Close()

	if err := filtering(parent, ctx, cfg, network, server, other, res); err != nil {
		return nil, err
	}
	return res, nil
}

// mappingTests runs mapping tests II and III (RFC 5780 section 4.3) after
// test I saw mapped1. It returns the behaviour, or Unknown and a reason; the
// error is set only when the caller's context ended.
func mappingTests(parent, ctx context.Context, s *session, server, other, mapped1 netip.AddrPort) (Behavior, string, error) {
	// Test II: alternate IP, primary port.
	dst2 := netip.AddrPortFrom(other.Addr(), server.Port())
	r2, err := s.roundTrip(ctx, dst2, dst2, changeRequest{})
	if err != nil {
		reason, err := unknownReason(parent, ctx, "mapping test II", err)
		return Unknown, reason, err
	}
	if unmap(r2.Mapped) == unmap(mapped1) {
		return EndpointIndependent, "", nil
	}
	// Test III: alternate IP and port.
	r3, err := s.roundTrip(ctx, other, other, changeRequest{})
	if err != nil {
		reason, err := unknownReason(parent, ctx, "mapping test III", err)
		return Unknown, reason, err
	}
	return mappingBehavior(mapped1, r2.Mapped, r3.Mapped), "", nil
}

// filtering runs the filtering tests (RFC 5780 section 4.4) on a fresh
// socket and fills in res.Filtering or res.FilteringReason. It returns an
// error only when the caller's context ended.
func filtering(parent, ctx context.Context, cfg Config, network string, server, other netip.AddrPort, res *Result) error {
	var laddr netip.AddrPort
	if cfg.LocalAddr.IsValid() {
		laddr = netip.AddrPortFrom(cfg.LocalAddr.Addr(), 0)
	}
	fconn, err := listen(network, laddr)
	if err != nil {
		res.FilteringReason = err.Error()
		return nil
	}
	defer fconn.Close()
	fs := &session{conn: fconn, rto: cfg.RTO, maxWait: cfg.MaxWait, log: cfg.Logger}

	// Test I opens the mapping (and the filter entry for the primary
	// address) the other tests are answered through.
	if _, err := fs.roundTrip(ctx, server, server, changeRequest{}); err != nil {
		res.FilteringReason, err = unknownReason(parent, ctx, "filtering test I on a second port", err)
		return err
	}
	// passes reports whether an answer from want got through; an error
	// other than no answer at all leaves the behaviour unknown.
	passes := func(name string, want netip.AddrPort, ch changeRequest) (ok, unknown bool, fatal error) {
		_, err := fs.roundTrip(ctx, server, want, ch)
		switch {
		case err == nil:
			return true, false, nil
		case errors.Is(err, ErrNoResponse):
			return false, false, nil // filtered
		}
		res.FilteringReason, fatal = unknownReason(parent, ctx, name, err)
		return false, true, fatal
	}
	// Test II: the answer comes from the alternate IP and port.
	gotII, unknown, err := passes("filtering test II", other, changeRequest{IP: true, Port: true})
	if unknown {
		return err
	}
	gotIII := false
	if !gotII {
		// Test III: the answer comes from the primary IP and the
		// alternate port.
		gotIII, unknown, err = passes("filtering test III", netip.AddrPortFrom(server.Addr(), other.Port()), changeRequest{Port: true})
		if unknown {
			return err
		}
	}
	res.Filtering = filteringBehavior(gotII, gotIII)
	return nil
}

// unknownReason turns the error of a failed test into the reason for an
// Unknown behaviour, or returns the caller's context error when the caller
// gave up (then the probe fails).
func unknownReason(parent, ctx context.Context, test string, err error) (string, error) {
	if perr := parent.Err(); perr != nil {
		return "", perr
	}
	var ws *wrongSourceError
	var er *errorResponse
	switch {
	case ctx.Err() != nil && errors.Is(context.Cause(ctx), errBudget):
		return test + ": " + errBudget.Error(), nil
	case errors.As(err, &ws):
		return fmt.Sprintf("%s: %v; the server does not honour CHANGE-REQUEST or the alternate address", test, ws), nil
	case errors.As(err, &er):
		return fmt.Sprintf("%s: %v", test, er), nil
	}
	return fmt.Sprintf("%s: %v", test, err), nil
}

// checkOther says why OTHER-ADDRESS other of server cannot drive the RFC
// 5780 tests, or returns "" if it can.
func checkOther(server, other netip.AddrPort) string {
	switch {
	case !other.IsValid():
		return "the server does not support RFC 5780 (no OTHER-ADDRESS in its answer)"
	case other.Addr().Is4() != server.Addr().Is4():
		return fmt.Sprintf("the server's OTHER-ADDRESS %v is of another address family", other)
	case other.Addr() == server.Addr() || other.Port() == server.Port():
		return fmt.Sprintf("the server's OTHER-ADDRESS %v must differ from %v in both IP address and port", other, server)
	}
	return ""
}

// resolveServer turns Config.Server into an address, preferring the
// family of local when it is set and IPv4 otherwise.
func resolveServer(ctx context.Context, s string, local netip.AddrPort) (netip.AddrPort, error) {
	if s == "" {
		return netip.AddrPort{}, ErrNoServer
	}
	host, port := s, strconv.Itoa(DefaultPort)
	if h, p, err := net.SplitHostPort(s); err == nil {
		host, port = h, p
	} else {
		host = strings.TrimSuffix(strings.TrimPrefix(s, "["), "]")
	}
	pn, err := net.DefaultResolver.LookupPort(ctx, "udp", port)
	if err != nil || pn == 0 {
		return netip.AddrPort{}, fmt.Errorf("nattype: server %q: bad port %q", s, port)
	}
	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else if addrs, err = net.DefaultResolver.LookupNetIP(ctx, "ip", host); err != nil {
		return netip.AddrPort{}, fmt.Errorf("nattype: resolving %q: %w", host, err)
	}
	want4 := !local.IsValid() || local.Addr().Unmap().Is4()
	for _, a := range addrs {
		if a = a.Unmap(); a.Is4() == want4 {
			return netip.AddrPortFrom(a, uint16(pn)), nil
		}
	}
	if len(addrs) > 0 && !local.IsValid() {
		return netip.AddrPortFrom(addrs[0].Unmap(), uint16(pn)), nil
	}
	return netip.AddrPort{}, fmt.Errorf("nattype: %q has no address of the local address's family", host)
}

func listen(network string, laddr netip.AddrPort) (*net.UDPConn, error) {
	var ua *net.UDPAddr
	if laddr.IsValid() {
		ua = net.UDPAddrFromAddrPort(laddr)
	}
	c, err := net.ListenUDP(network, ua)
	if err != nil {
		return nil, fmt.Errorf("nattype: %w", err)
	}
	return c, nil
}

// localAddr returns c's local address; when c is bound to any address it
// asks the kernel which source address it would use towards server.
func localAddr(network string, c *net.UDPConn, server netip.AddrPort) (netip.AddrPort, error) {
	la := c.LocalAddr().(*net.UDPAddr).AddrPort()
	ip := la.Addr().Unmap()
	if ip.IsUnspecified() {
		// Connecting a UDP socket sends nothing; it only looks up the
		// route.
		d, err := net.DialUDP(network, nil, net.UDPAddrFromAddrPort(server))
		if err != nil {
			return netip.AddrPort{}, fmt.Errorf("nattype: finding the local address towards %v: %w", server, err)
		}
		ip = d.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		d.Close()
	}
	return netip.AddrPortFrom(ip, la.Port()), nil
}
