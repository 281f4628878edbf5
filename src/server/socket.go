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

// socket is the listening end for one LAN address: UDP sockets bound to it
// (and, for interface addresses, to the interface itself with
// SO_BINDTODEVICE, so that datagrams that arrive on another interface are
// never delivered to them). There are steerSockets of them in one
// SO_REUSEPORT group, among which the kernel spreads datagrams by source
// address (see steer), each with its own reader; conn, the first, also
// sends the announcements.
type socket struct {
	ifname string
	conn   *net.UDPConn
	more   []*net.UDPConn // the rest of the group; empty when steering is unavailable
	done   chan struct{}  // closed when the sockets are closed
}

// conns returns every socket of the group.
func (sk *socket) conns() []*net.UDPConn {
	return append([]*net.UDPConn{sk.conn}, sk.more...)
}

func (sk *socket) close() {
	for _, c := range sk.conns() {
		c.Close()
	}
	close(sk.done)
}

// refreshInterval is how often Serve looks for LAN addresses that appeared
// or went away (an interface brought up after dpfd, a DHCP change).
const refreshInterval = 5 * time.Second

// maxDatagram is larger than any valid request (PCP's limit is 1100 bytes)
// so that oversized ones are seen as such rather than truncated.
const maxDatagram = 2048

// steerSockets is how many sockets share each listening address. A host
// that floods the server faster than it can read fills a socket's receive
// buffer, and the kernel then drops what arrives for that socket, whoever
// sent it; the per-host rate limit comes too late to help, since it runs
// after the read. With the datagrams spread over several sockets by
// source address, a flood fills only its own socket's buffer and the
// other hosts' requests, on other sockets, are still read: a host shares
// its socket with a flooder only when their addresses fall in the same
// one of steerSockets classes. Eight keeps that chance small at eight
// idle goroutines and descriptors per address.
const steerSockets = 8

// rcvBufBytes is the receive buffer asked for each socket (the kernel
// doubles it for its bookkeeping), a little more than the usual default
// (net.core.rmem_default, 208 KiB) so that a burst of renewals from many
// hosts at once is not dropped, without holding much memory on a small
// router when every socket is flooded.
const rcvBufBytes = 256 << 10

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
		sk, err := s.listenGroup(ctx, ap, ifname)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		s.socks[ap] = sk
		s.log.Info("listening", "addr", sk.conn.LocalAddr().String(), "interface", ifname, "sockets", 1+len(sk.more))
		for _, c := range sk.conns() {
			s.wg.Add(1)
			go s.readLoop(c)
		}
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

// listenGroup opens the sockets for ap: steerSockets of them in one
// SO_REUSEPORT group steered by source address, or, where the kernel
// refuses the steering program, a single socket.
func (s *Server) listenGroup(ctx context.Context, ap netip.AddrPort, ifname string) (*socket, error) {
	first, err := listen(ctx, ap, ifname)
	if err != nil {
		return nil, err
	}
	sk := &socket{ifname: ifname, conn: first, done: make(chan struct{})}
	if err := steer(first, steerSockets); err != nil {
		s.log.Warn("one socket for all hosts: a flooding host can delay others' requests", "addr", ap.String(), "err", err)
		return sk, nil
	}
	for range steerSockets - 1 {
		c, err := listen(ctx, ap, ifname)
		if err != nil {
			// The group works with fewer sockets (the program's
			// index past the last one falls back to the kernel's
			// hash), so keep what was opened.
			s.log.Warn("opening a steered socket", "addr", ap.String(), "err", err)
			break
		}
		sk.more = append(sk.more, c)
	}
	return sk, nil
}

// listen opens one UDP socket on ap, in the SO_REUSEPORT group of ap, bound
// to ifname unless it is empty.
func listen(ctx context.Context, ap netip.AddrPort, ifname string) (*net.UDPConn, error) {
	lc := net.ListenConfig{Control: func(network, address string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, o := range []int{unix.SO_REUSEADDR, unix.SO_REUSEPORT} {
				if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, o, 1); serr != nil {
					return
				}
			}
			// SO_RCVBUFFORCE passes net.core.rmem_max (dpfd runs
			// as root); without CAP_NET_ADMIN, SO_RCVBUF gives what
			// rmem_max allows. Neither failing matters.
			if unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvBufBytes) != nil {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, rcvBufBytes)
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

// skfNetOff is SKF_NET_OFF (linux/filter.h): added to a classic BPF load
// offset, it addresses the packet's network (IP) header rather than the
// data the program starts at (for a SO_REUSEPORT program, the UDP
// payload).
const skfNetOff = -0x100000

// ipv4SrcOff is the offset of the source address in the IPv4 header (RFC
// 791 section 3.1).
const ipv4SrcOff = 12

// steer attaches to conn's SO_REUSEPORT group a classic BPF program that
// sends each datagram to socket number (IPv4 source address mod n) of the
// group, in the order the sockets joined it (SO_ATTACH_REUSEPORT_CBPF,
// Linux 4.5). A number past the group's last socket makes the kernel fall
// back to its own hash, so a group that is not yet (or no longer) full
// still gets every datagram.
func steer(conn *net.UDPConn, n int) error {
	srcOff := int32(skfNetOff + ipv4SrcOff) // negative: the kernel reads it as signed
	prog := []unix.SockFilter{
		{Code: unix.BPF_LD | unix.BPF_W | unix.BPF_ABS, K: uint32(srcOff)},
		{Code: unix.BPF_ALU | unix.BPF_MOD | unix.BPF_K, K: uint32(n)},
		{Code: unix.BPF_RET | unix.BPF_A},
	}
	rc, err := conn.SyscallConn()
	if err != nil {
		return fmt.Errorf("steering datagrams by source: %w", err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_REUSEPORT_CBPF,
			&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]})
	}); err != nil {
		return fmt.Errorf("steering datagrams by source: %w", err)
	}
	if serr != nil {
		return fmt.Errorf("steering datagrams by source (SO_ATTACH_REUSEPORT_CBPF): %w", serr)
	}
	return nil
}

// readLoop answers the datagrams read from conn until it is closed. The
// per-host rate limit is the first thing Handle checks, so a flood costs a
// read and a map lookup per datagram, no parsing.
func (s *Server) readLoop(conn *net.UDPConn) {
	defer s.wg.Done()
	buf := make([]byte, maxDatagram)
	for {
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			s.log.Warn("reading request", "err", err)
			continue
		}
		if resp := s.Handle(buf[:n], src); resp != nil {
			if _, err := conn.WriteToUDPAddrPort(resp, src); err != nil {
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
