package client

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"
)

// Option configures Listen and ListenPacket.
type Option func(*listenOptions)

type listenOptions struct {
	client        *Client
	cfg           Config
	extPort       uint16
	desc          string
	allowUnmapped bool
}

// WithClient makes the socket's mapping through c, which the caller keeps
// owning: closing the socket does not close c. Without it, Listen creates a
// Client of its own (from WithConfig, or the zero Config) and closes it with
// the socket.
func WithClient(c *Client) Option { return func(o *listenOptions) { o.client = c } }

// WithConfig sets the Config of the Client that Listen creates. It is
// ignored with WithClient.
func WithConfig(cfg Config) Option { return func(o *listenOptions) { o.cfg = cfg } }

// WithExternalPort suggests an external port; without it the socket's own
// port is suggested. The gateway may grant another: use PublicAddr.
func WithExternalPort(port uint16) Option { return func(o *listenOptions) { o.extPort = port } }

// WithDescription sets the PCP DESCRIPTION text of the mapping.
func WithDescription(s string) Option { return func(o *listenOptions) { o.desc = s } }

// AllowUnmapped makes Listen return the socket even when the mapping cannot
// be had. PublicAddr is then the zero AddrPort and Err says why; the Client
// keeps trying in the background and a Restored event on Mapping().Events()
// tells when it succeeds.
func AllowUnmapped() Option { return func(o *listenOptions) { o.allowUnmapped = true } }

// pinhole is what Listener and PacketConn share: the mapping, the Client it
// belongs to and the close logic.
type pinhole struct {
	m         *Mapping
	c         *Client
	ownClient bool
	once      sync.Once
	closeErr  error
}

// close releases the mapping (waiting at most ReleaseTimeout), then closes
// the socket with closeSock, then the Client if Listen created it. A failed
// release is logged and reported in the Released event, not returned: the
// lease lapses on its own.
func (p *pinhole) close(closeSock func() error) error {
	p.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), p.c.releaseTimeout)
		p.m.Release(ctx)
		cancel()
		p.closeErr = closeSock()
		if p.ownClient {
			p.c.Close()
		}
	})
	return p.closeErr
}

// Listener is a net.Listener whose port is mapped at the gateway. Accept
// and Addr behave as for the embedded listener: Addr is the local address,
// PublicAddr the external one.
type Listener struct {
	net.Listener
	p *pinhole
}

// Close releases the mapping (bounded by ReleaseTimeout) and closes the
// socket. It returns the socket's close error. It is idempotent.
func (l *Listener) Close() error { return l.p.close(l.Listener.Close) }

// PublicAddr returns the external address and port at which the listener
// is reachable from outside, the zero AddrPort while there is no mapping. It
// can change after a gateway restart (see Mapping.Events).
func (l *Listener) PublicAddr() netip.AddrPort { return l.p.m.External() }

// Mapping returns the listener's mapping, for its events and details.
func (l *Listener) Mapping() *Mapping { return l.p.m }

// Err returns why the listener is not reachable from outside at the moment
// (the mapping's last failure), nil when it is.
func (l *Listener) Err() error { return l.p.m.Err() }

// PacketConn is a net.PacketConn whose port is mapped at the gateway.
// LocalAddr is the local address, PublicAddr the external one.
type PacketConn struct {
	net.PacketConn
	p *pinhole
}

// Close releases the mapping (bounded by ReleaseTimeout) and closes the
// socket. It returns the socket's close error. It is idempotent.
func (c *PacketConn) Close() error { return c.p.close(c.PacketConn.Close) }

// PublicAddr returns the external address and port at which the socket is
// reachable from outside, the zero AddrPort while there is no mapping.
func (c *PacketConn) PublicAddr() netip.AddrPort { return c.p.m.External() }

// Mapping returns the socket's mapping, for its events and details.
func (c *PacketConn) Mapping() *Mapping { return c.p.m }

// Err returns why the socket is not reachable from outside at the moment,
// nil when it is.
func (c *PacketConn) Err() error { return c.p.m.Err() }

// ListenTimeout bounds the mapping request of Listen and ListenPacket when
// their context has no deadline: PCP would otherwise retransmit forever to a
// gateway that drops it silently (RFC 6887 section 8.1.1). It allows four
// PCP transmissions (at 0, 3, 9 and 21 s).
const ListenTimeout = 30 * time.Second

// Listen is net.Listen followed by a mapping of the socket's port at the
// gateway. network is "tcp", "tcp4" or "tcp6"; a "tcp6" socket on the
// unspecified address is made dual-stack, since the gateway forwards IPv4.
// The socket is bound first, so port 0 works: the kernel's port is the
// internal port and the suggested external port.
//
// A socket bound to a loopback address, or to a specific IPv6 address,
// cannot be exposed and fails with ErrUnmappable. If the gateway refuses or
// does not answer, the socket is closed and the error returned (a
// *ResultError matching an ErrX sentinel, or ErrGatewayUnreachable),
// unless AllowUnmapped is given. ctx bounds the mapping request; without a
// deadline, ListenTimeout applies.
func Listen(ctx context.Context, network, address string, opts ...Option) (*Listener, error) {
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("client: listen %s %s: network not tcp, tcp4 or tcp6", network, address)
	}
	lc := net.ListenConfig{Control: dualStack}
	ln, err := lc.Listen(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("client: listen: %w", err)
	}
	local := ln.Addr().(*net.TCPAddr).AddrPort()
	p, err := expose(ctx, network, address, TCP, local, ln.Close, opts)
	if err != nil {
		return nil, err
	}
	return &Listener{Listener: ln, p: p}, nil
}

// ListenPacket is net.ListenPacket followed by a mapping of the socket's
// port at the gateway; network is "udp", "udp4" or "udp6". Everything else
// is as for Listen.
func ListenPacket(ctx context.Context, network, address string, opts ...Option) (*PacketConn, error) {
	switch network {
	case "udp", "udp4", "udp6":
	default:
		return nil, fmt.Errorf("client: listen %s %s: network not udp, udp4 or udp6", network, address)
	}
	lc := net.ListenConfig{Control: dualStack}
	pc, err := lc.ListenPacket(ctx, network, address)
	if err != nil {
		return nil, fmt.Errorf("client: listen: %w", err)
	}
	local := pc.LocalAddr().(*net.UDPAddr).AddrPort()
	p, err := expose(ctx, network, address, UDP, local, pc.Close, opts)
	if err != nil {
		return nil, err
	}
	return &PacketConn{PacketConn: pc, p: p}, nil
}

// expose maps the bound socket's port. On failure it closes the socket
// (closeSock) and any Client it created.
func expose(ctx context.Context, network, address string, proto Protocol, local netip.AddrPort,
	closeSock func() error, opts []Option) (_ *pinhole, err error) {
	what := "client: listen " + network + " " + address
	var o listenOptions
	for _, opt := range opts {
		opt(&o)
	}
	defer func() {
		if err != nil {
			closeSock()
		}
	}()
	ip := local.Addr().Unmap()
	switch {
	case ip.IsLoopback():
		return nil, fmt.Errorf("%s: loopback address %s: %w", what, ip, ErrUnmappable)
	case ip.Is6() && !ip.IsUnspecified():
		return nil, fmt.Errorf("%s: IPv6 address %s: %w", what, ip, ErrUnmappable)
	}
	req := MapRequest{Protocol: proto, InternalPort: local.Port(), SuggestedExternalPort: o.extPort, Description: o.desc}
	if ip.Is4() && !ip.IsUnspecified() {
		req.InternalAddr = ip
	}
	c, own := o.client, false
	if c == nil {
		if c, err = New(o.cfg); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		own = true
	}
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, ListenTimeout)
		defer cancel()
	}
	m, merr := c.mapping(ctx, req, o.allowUnmapped)
	if m == nil {
		if own {
			c.Close()
		}
		return nil, fmt.Errorf("%s: %w", what, merr)
	}
	// With AllowUnmapped, merr is reported by Err and the Lost event.
	return &pinhole{m: m, c: c, ownClient: own}, nil
}
