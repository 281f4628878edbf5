package nattype

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"time"

	"github.com/pion/stun/v3"
)

// Retransmission parameters, RFC 8489 section 6.2.1 (RFC 5389 section
// 7.2.1).
const (
	// DefaultRTO is the initial retransmission timeout the RFC recommends.
	DefaultRTO = 500 * time.Millisecond
	// rc is the number of requests sent before giving up (Rc).
	rc = 7
	// rm is how many RTOs to wait after the last request (Rm).
	rm = 16
)

// maxDatagram bounds a received datagram; Binding responses are far
// smaller, a truncated one fails to decode and is ignored.
const maxDatagram = 2048

// ErrNoResponse means a request went unanswered after its retransmissions.
var ErrNoResponse = errors.New("no response from STUN server")

// wrongSourceError means only an answer from an address other than the
// expected one arrived (a server that ignores CHANGE-REQUEST does this).
type wrongSourceError struct {
	Want, Got netip.AddrPort
}

func (e *wrongSourceError) Error() string {
	return fmt.Sprintf("answer came from %v instead of %v", e.Got, e.Want)
}

// schedule returns when the requests of one transaction go out, as offsets
// from the first, and when the transaction gives up: requests at 0, RTO,
// 3 RTO, 7 RTO, ... (the interval doubles), rc of them, then rm RTOs of
// waiting after the last.
func schedule(rto time.Duration) (sends []time.Duration, end time.Duration) {
	var at time.Duration
	interval := rto
	for i := range rc {
		sends = append(sends, at)
		if i < rc-1 {
			at += interval
			interval *= 2
		}
	}
	return sends, at + rm*rto
}

// transaction is one outstanding Binding request.
type transaction struct {
	id     [stun.TransactionIDSize]byte
	dst    netip.AddrPort // where the request goes
	from   netip.AddrPort // the only source an answer is accepted from
	change changeRequest

	// wrongSource is the last source that answered with our transaction
	// ID but was not from; zero if none did.
	wrongSource netip.AddrPort
}

// errIgnored wraps the reasons handle gives for ignoring a datagram.
var errIgnored = errors.New("ignored datagram")

// handle examines datagram b from src. It reports done when b answers t:
// then err is nil for a success response or *errorResponse for an error
// response. Anything else (not STUN, another transaction, a request, the
// wrong source, a malformed answer) is not done, with the reason in err.
// It never panics, whatever b holds.
func (t *transaction) handle(b []byte, src netip.AddrPort) (r response, done bool, err error) {
	if !stun.IsMessage(b) {
		return response{}, false, fmt.Errorf("%w: not STUN", errIgnored)
	}
	m := new(stun.Message)
	if err := stun.Decode(b, m); err != nil {
		return response{}, false, fmt.Errorf("%w: %w", errIgnored, err)
	}
	if m.TransactionID != t.id {
		return response{}, false, fmt.Errorf("%w: transaction ID %x is not ours", errIgnored, m.TransactionID)
	}
	src = netip.AddrPortFrom(src.Addr().Unmap(), src.Port())
	if src != t.from {
		t.wrongSource = src
		return response{}, false, fmt.Errorf("%w: from %v, want %v", errIgnored, src, t.from)
	}
	r, err = decodeResponse(m)
	var er *errorResponse
	if err != nil && !errors.As(err, &er) {
		// A malformed answer may be a forgery; keep waiting for the
		// real one.
		return response{}, false, fmt.Errorf("%w: %w", errIgnored, err)
	}
	return r, true, err
}

// session runs transactions, one at a time, over a UDP socket it owns.
type session struct {
	conn    *net.UDPConn
	rto     time.Duration
	maxWait time.Duration
	log     *slog.Logger
	buf     []byte
}

// roundTrip sends a Binding request to dst, asking for ch, and waits for an
// answer from want. It retransmits per schedule and gives up after
// maxWait or the schedule's end with ErrNoResponse (or *wrongSourceError
// if only answers from elsewhere came), or with ctx's error.
func (s *session) roundTrip(ctx context.Context, dst, want netip.AddrPort, ch changeRequest) (response, error) {
	t := &transaction{id: stun.NewTransactionID(), dst: dst, from: want, change: ch}
	req, err := newRequest(t.id, ch)
	if err != nil {
		return response{}, err
	}
	// A cancelled context wakes a blocked read.
	stop := context.AfterFunc(ctx, func() { s.conn.SetReadDeadline(time.Now()) })
	defer stop()

	sends, end := schedule(s.rto)
	start := time.Now()
	deadline := start.Add(min(end, s.maxWait))
	next := 0 // index into sends of the next request
	if s.buf == nil {
		s.buf = make([]byte, maxDatagram)
	}
	for {
		if err := ctx.Err(); err != nil {
			return response{}, err
		}
		now := time.Now()
		if now.After(deadline) {
			if t.wrongSource.IsValid() {
				return response{}, &wrongSourceError{Want: want, Got: t.wrongSource}
			}
			return response{}, fmt.Errorf("%w: %d requests to %v (%v) in %v", ErrNoResponse, next, dst, ch, now.Sub(start).Round(time.Millisecond))
		}
		if next < len(sends) && now.Sub(start) >= sends[next] {
			if _, err := s.conn.WriteToUDPAddrPort(req, dst); err != nil {
				return response{}, fmt.Errorf("sending to %v: %w", dst, err)
			}
			next++
			// Skip requests whose time has passed too (a stalled
			// process); one is enough.
			for next < len(sends) && now.Sub(start) >= sends[next] {
				next++
			}
			s.log.Debug("stun: request sent", "to", dst, "change", ch.String(), "attempt", next, "id", fmt.Sprintf("%x", t.id))
		}
		wake := deadline
		if next < len(sends) && start.Add(sends[next]).Before(wake) {
			wake = start.Add(sends[next])
		}
		s.conn.SetReadDeadline(wake)
		// Re-check after setting the deadline: a cancellation that
		// fired before it would have had its deadline overwritten.
		if err := ctx.Err(); err != nil {
			return response{}, err
		}
		n, src, err := s.conn.ReadFromUDPAddrPort(s.buf)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return response{}, fmt.Errorf("reading: %w", err)
		}
		r, done, err := t.handle(s.buf[:n], src)
		if !done {
			s.log.Debug("stun: datagram ignored", "from", src, "reason", err)
			continue
		}
		if err != nil {
			return response{}, err
		}
		s.log.Debug("stun: response", "from", src, "mapped", r.Mapped, "other", r.Other, "origin", r.Origin)
		return r, nil
	}
}
