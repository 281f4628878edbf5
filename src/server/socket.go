package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/ifaddr"
)

// socket is one UDP socket bound to a LAN address (and, for interface
// addresses, to the interface itself with SO_BINDTODEVICE, so that datagrams
// that arrive on another interface are never delivered to it).
type socket struct {
	ifname string
	conn   *net.UDPConn
	done   chan struct{} // closed when the socket is closed
}

func (sk *socket) close() {
	sk.conn.Close()
	close(sk.done)
}

// refreshInterval is how often Serve looks for LAN addresses that appeared
// or went away (an interface brought up after dpfd, a DHCP change).
const refreshInterval = 5 * time.Second

// maxDatagram is larger than any valid request (PCP's limit is 1100 bytes)
// so that oversized ones are seen as such rather than truncated.
const maxDatagram = 2048

// Serve listens on the LAN addresses and answers requests until ctx is done.
// It fails at once if no address can be bound; addresses that appear later
// are picked up.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.refresh(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	n := len(s.socks)
	s.mu.Unlock()
	if n == 0 {
		s.log.Warn("no LAN address to listen on yet; waiting for one", "interfaces", s.cfg.LANInterfaces)
	}
	t := time.NewTicker(refreshInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			s.closeAll()
			s.wg.Wait()
			return nil
		case <-t.C:
			if err := s.refresh(ctx); err != nil {
				s.log.Warn("refreshing LAN sockets", "err", err)
			}
		}
	}
}

// Listening returns the addresses the server currently listens on.
func (s *Server) Listening() []netip.AddrPort {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]netip.AddrPort, 0, len(s.socks))
	for a := range s.socks {
		out = append(out, a)
	}
	return out
}

// lanAddrs returns the wanted listening addresses, with the interface each
// must be bound to ("" for none).
func (s *Server) lanAddrs() (map[netip.AddrPort]string, error) {
	want := map[netip.AddrPort]string{}
	var errs []error
	for _, name := range s.cfg.LANInterfaces {
		ps, err := ifaddr.IPv4(name)
		if err != nil {
			errs = append(errs, fmt.Errorf("LAN %w", err))
			continue
		}
		for _, p := range ps {
			want[netip.AddrPortFrom(p.Addr(), 5351)] = name
		}
	}
	for _, ap := range s.cfg.ExtraListen {
		want[ap] = ""
	}
	return want, errors.Join(errs...)
}

func (s *Server) refresh(ctx context.Context) error {
	want, lookupErr := s.lanAddrs()
	s.mu.Lock()
	defer s.mu.Unlock()
	for ap, sk := range s.socks {
		if ifname, ok := want[ap]; !ok || ifname != sk.ifname {
			s.log.Info("no longer listening", "addr", ap.String(), "interface", sk.ifname)
			sk.close()
			delete(s.socks, ap)
		}
	}
	var errs []error
	for ap, ifname := range want {
		if _, ok := s.socks[ap]; ok {
			continue
		}
		conn, err := listen(ctx, ap, ifname)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		sk := &socket{ifname: ifname, conn: conn, done: make(chan struct{})}
		s.socks[ap] = sk
		s.log.Info("listening", "addr", conn.LocalAddr().String(), "interface", ifname)
		s.wg.Add(1)
		go s.readLoop(sk)
		if to := s.announceTo(ifname); to.IsValid() {
			s.wg.Add(1)
			go s.announce(sk, to)
		}
	}
	if len(s.socks) == 0 && (lookupErr != nil || len(errs) > 0) {
		return errors.Join(lookupErr, errors.Join(errs...))
	}
	return nil
}

func listen(ctx context.Context, ap netip.AddrPort, ifname string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); serr != nil {
				return
			}
			if ifname != "" {
				serr = unix.BindToDevice(int(fd), ifname)
			}
		})
		if err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(ctx, "udp4", net.JoinHostPort(ap.Addr().String(), strconv.Itoa(int(ap.Port()))))
	if err != nil {
		return nil, fmt.Errorf("listening on %s (%s): %w", ap, ifname, err)
	}
	return pc.(*net.UDPConn), nil
}

func (s *Server) readLoop(sk *socket) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := sk.conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("reading request", "err", err)
			continue
		}
		if resp := s.Handle(buf[:n], src); resp != nil {
			if _, err := sk.conn.WriteToUDPAddrPort(resp, src); err != nil {
				s.log.Debug("sending response", "to", src.String(), "err", err)
			}
		}
	}
}

func (s *Server) closeAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ap, sk := range s.socks {
		sk.close()
		delete(s.socks, ap)
	}
}

// announceTo is where a socket on ifname sends its announcements: the
// configured address, for interface sockets only (an extra listen address
// has no link to multicast on). The zero AddrPort means none.
func (s *Server) announceTo(ifname string) netip.AddrPort {
	if s.cfg.NoAnnounce || ifname == "" {
		return netip.AddrPort{}
	}
	if s.cfg.AnnounceAddr.IsValid() {
		return s.cfg.AnnounceAddr
	}
	return DefaultAnnounceAddr
}
