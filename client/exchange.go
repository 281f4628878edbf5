package client

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"time"
)

// PCP retransmission (RFC 6887 section 8.1.1): the first timeout is IRT,
// each next one doubles up to MRT, each randomised by a factor in [0.9,
// 1.1]. MRC and MRD are 0: there is no limit on the number or total time of
// retransmissions, so the caller's context bounds the exchange.
const (
	pcpIRT = 3 * time.Second
	pcpMRT = 1024 * time.Second
)

// NAT-PMP retransmission (RFC 6886 section 3.1): 250 ms, doubling, 9
// attempts in all (about 128 s) before giving up.
const (
	natpmpIRT      = 250 * time.Millisecond
	natpmpAttempts = 9
)

// maxDatagram is large enough for any PCP (1100 bytes, RFC 6887 section 7)
// or NAT-PMP message.
const maxDatagram = 1500

// pcpTimeout returns the retransmission timeout that follows prev (0 for the
// first transmission): RT = (1+RAND)*IRT first, then RT = (1+RAND)*MIN(2*RTprev,
// MRT) (RFC 6887 section 8.1.1). r is uniform in [0,1) and gives RAND =
// 0.2*r - 0.1, in [-0.1, +0.1).
func pcpTimeout(prev, irt time.Duration, r float64) time.Duration {
	base := irt
	if prev > 0 {
		base = min(2*prev, pcpMRT)
	}
	return time.Duration(float64(base) * (1 + 0.2*r - 0.1))
}

// natpmpTimeout returns the timeout of attempt n (0-based), irt<<n, and
// false once the natpmpAttempts attempts are used up (RFC 6886 section 3.1).
func natpmpTimeout(n int, irt time.Duration) (time.Duration, bool) {
	if n >= natpmpAttempts {
		return 0, false
	}
	return irt << n, true
}

// schedule yields the timeout of each transmission in turn, false when no
// more transmissions are allowed.
type schedule func() (time.Duration, bool)

func pcpSchedule(irt time.Duration) schedule {
	var rt time.Duration
	return func() (time.Duration, bool) {
		rt = pcpTimeout(rt, irt, rand.Float64())
		return rt, true
	}
}

func natpmpSchedule(irt time.Duration) schedule {
	n := 0
	return func() (time.Duration, bool) {
		d, ok := natpmpTimeout(n, irt)
		n++
		return d, ok
	}
}

// exchange performs one request/response exchange with the gateway gw on a
// fresh UDP socket connected to it, bound to laddr (any address when laddr
// is the zero Addr) and an ephemeral port.
//
// build makes the request from the socket's local address, for every
// transmission on the schedule sched: the same bytes unless the request is
// signed, which takes a fresh sequence number each time (auth.go); an error
// from build ends the exchange with it. handle is given every datagram
// that arrives; it returns done false to ignore the datagram and keep
// waiting (a response to something else, a forgery, garbage), or done true
// to end the exchange with its error. exchange returns the local address
// with that error.
//
// When the schedule runs out, the context ends or the gateway answers with
// an ICMP error, the error wraps ErrGatewayUnreachable (and the context's
// error, if that ended it).
func exchange(ctx context.Context, gw netip.AddrPort, laddr netip.Addr, sched schedule,
	build func(local netip.AddrPort) ([]byte, error), handle func(b []byte) (done bool, err error)) (netip.AddrPort, error) {
	var la *net.UDPAddr
	if laddr.IsValid() {
		la = net.UDPAddrFromAddrPort(netip.AddrPortFrom(laddr, 0))
	}
	conn, err := net.DialUDP("udp", la, net.UDPAddrFromAddrPort(gw))
	if err != nil {
		return netip.AddrPort{}, unreachable(gw, err)
	}
	// Closing the socket is what interrupts a blocked read when the
	// context ends.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer func() {
		stop()
		conn.Close()
	}()
	local := conn.LocalAddr().(*net.UDPAddr).AddrPort()
	local = netip.AddrPortFrom(local.Addr().Unmap(), local.Port())
	buf := make([]byte, maxDatagram)

	fail := func(err error) (netip.AddrPort, error) {
		if ctx.Err() != nil {
			return local, unreachable(gw, context.Cause(ctx))
		}
		return local, unreachable(gw, err)
	}
	attempts := 0
	for {
		timeout, ok := sched()
		if !ok {
			return local, unreachable(gw, fmt.Errorf("no answer after %d attempts", attempts))
		}
		attempts++
		req, err := build(local)
		if err != nil {
			return local, err
		}
		if _, err := conn.Write(req); err != nil {
			return fail(err)
		}
		deadline := time.Now().Add(timeout)
		for {
			if err := conn.SetReadDeadline(deadline); err != nil {
				return fail(err)
			}
			n, err := conn.Read(buf)
			if errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				break // retransmit
			}
			if err != nil {
				return fail(err)
			}
			if done, err := handle(buf[:n]); done {
				return local, err
			}
		}
	}
}
