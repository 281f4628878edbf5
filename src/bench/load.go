package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Proto is the mapping protocol the load generator speaks.
type Proto string

// The protocols.
const (
	NATPMP Proto = "natpmp"
	PCP    Proto = "pcp"
)

// protoTCP is IANA protocol number 6, used in PCP MAP requests.
const protoTCP = 6

// resendEvery (4 s) is how long a worker waits for an answer before sending the
// same request again (RFC 6886 starts at 250 ms and doubles; a fixed, longer
// interval keeps retransmissions from adding load to a slow daemon).
const resendEvery = 4 * time.Second

// ErrNoAnswer is returned when a request gets no matching answer in time.
var ErrNoAnswer = errors.New("no answer")

// ErrRefused is returned when the daemon answers with a result code other
// than success.
var ErrRefused = errors.New("refused")

// Op is one mapping request: map (Lifetime > 0) or delete (Lifetime 0) TCP
// port Port of LAN host Host, asking for the same external port.
type Op struct {
	Host     int
	Port     uint16
	Lifetime uint32
}

// Generator sends NAT-PMP or PCP requests from the lab's LAN hosts to the
// router, InFlight requests at a time per host, each from its own UDP
// socket. Close releases the sockets.
type Generator struct {
	proto   Proto
	timeout time.Duration
	// conns[h][w] is worker w's socket in LAN host h.
	conns [][]*net.UDPConn
}

// NewGenerator opens inFlight sockets in each of the first hosts LAN hosts
// of l. timeout bounds each request, retransmissions included.
func NewGenerator(l *lab.Lab, hosts, inFlight int, proto Proto, timeout time.Duration) (*Generator, error) {
	g := &Generator{proto: proto, timeout: timeout}
	dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.RouterLAN, natpmp.ServerPort))
	for h := range hosts {
		var row []*net.UDPConn
		err := lab.In(l.LAN[h], func() error {
			for range inFlight {
				c, err := net.DialUDP("udp4", &net.UDPAddr{IP: lab.LANHost(h).AsSlice()}, dst)
				if err != nil {
					return err
				}
				row = append(row, c)
			}
			return nil
		})
		g.conns = append(g.conns, row)
		if err != nil {
			g.Close()
			return nil, fmt.Errorf("opening sockets in LAN host %d: %w", h, err)
		}
	}
	return g, nil
}

// Close closes every socket.
func (g *Generator) Close() {
	for _, row := range g.conns {
		for _, c := range row {
			c.Close()
		}
	}
}

// Hosts returns the number of LAN hosts the generator sends from.
func (g *Generator) Hosts() int { return len(g.conns) }

// nonce derives a PCP mapping nonce from host and port, so a delete can
// repeat the nonce of the map that made the mapping.
func nonce(host int, port uint16) [12]byte {
	var n [12]byte
	copy(n[:], "dpfbench")
	n[8], n[9], n[10], n[11] = byte(host), 0, byte(port>>8), byte(port)
	return n
}

// encode returns the wire form of op.
func (g *Generator) encode(op Op) []byte {
	if g.proto == NATPMP {
		return natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: op.Port, SuggestedExternalPort: op.Port, Lifetime: op.Lifetime}.AppendTo(nil)
	}
	return pcp.Request{Op: pcp.OpMap, Lifetime: op.Lifetime, ClientAddr: lab.LANHost(op.Host),
		Map: pcp.MapData{Nonce: nonce(op.Host, op.Port), Protocol: protoTCP, InternalPort: op.Port,
			ExternalPort: op.Port, ExternalAddr: netip.IPv4Unspecified()}}.AppendTo(nil)
}

// match reports whether b answers op; ext is the granted external port.
func (g *Generator) match(op Op, b []byte) (ok bool, ext uint16, err error) {
	if g.proto == NATPMP {
		r, perr := natpmp.ParseResponse(b)
		if perr != nil || r.Op != natpmp.OpMapTCP || r.InternalPort != op.Port {
			return false, 0, nil
		}
		if r.Result != natpmp.ResultSuccess {
			return true, 0, fmt.Errorf("%w: NAT-PMP result %d", ErrRefused, r.Result)
		}
		return true, r.ExternalPort, nil
	}
	r, perr := pcp.ParseResponse(b)
	if perr != nil || r.Op != pcp.OpMap || r.Map.Nonce != nonce(op.Host, op.Port) {
		return false, 0, nil
	}
	if r.Result != pcp.ResultSuccess {
		return true, 0, fmt.Errorf("%w: PCP result %s", ErrRefused, pcp.ResultString(r.Result))
	}
	return true, r.Map.ExternalPort, nil
}

// Do sends op from worker w of its host and waits for the matching answer,
// resending every resendEvery, for at most the generator's timeout or until
// ctx ends. It returns the time from the first send to the answer and the
// granted external port.
func (g *Generator) Do(ctx context.Context, w int, op Op) (time.Duration, uint16, error) {
	c := g.conns[op.Host][w]
	req := g.encode(op)
	buf := make([]byte, 1500)
	start := time.Now()
	deadline := start.Add(g.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	for {
		if _, err := c.Write(req); err != nil {
			return 0, 0, fmt.Errorf("sending request: %w", err)
		}
		wait := time.Now().Add(resendEvery)
		if deadline.Before(wait) {
			wait = deadline
		}
		c.SetReadDeadline(wait)
		for {
			n, err := c.Read(buf)
			if err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					break
				}
				// ICMP port unreachable while the daemon restarts:
				// keep waiting until the resend.
				time.Sleep(10 * time.Millisecond)
				if time.Now().After(wait) {
					break
				}
				continue
			}
			if ok, ext, merr := g.match(op, buf[:n]); ok {
				return time.Since(start), ext, merr
			}
		}
		if !time.Now().Before(deadline) || ctx.Err() != nil {
			return 0, 0, fmt.Errorf("port %d from LAN host %d: %w", op.Port, op.Host, ErrNoAnswer)
		}
	}
}

// Result is what Run measured.
type Result struct {
	Done      int             // requests answered with success
	Failed    int             // requests refused or unanswered
	Elapsed   time.Duration   // wall time of the run
	Latencies []time.Duration // of the successful requests
	// Ext maps each successful op's port to the external port granted.
	Ext       map[Op]uint16
	FirstErr  error
	Truncated bool // ctx ended before every op was sent
}

// Run performs ops, each host's ops by that host's workers, and returns when
// all are done or ctx ends.
func (g *Generator) Run(ctx context.Context, ops []Op) Result {
	perHost := make([]chan Op, len(g.conns))
	for h := range perHost {
		perHost[h] = make(chan Op, len(ops))
	}
	for _, op := range ops {
		perHost[op.Host] <- op
	}
	for _, ch := range perHost {
		close(ch)
	}
	var (
		mu  sync.Mutex
		res = Result{Ext: make(map[Op]uint16, len(ops))}
		wg  sync.WaitGroup
	)
	start := time.Now()
	for h, row := range g.conns {
		for w := range row {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for op := range perHost[h] {
					if ctx.Err() != nil {
						mu.Lock()
						res.Truncated = true
						mu.Unlock()
						return
					}
					lat, ext, err := g.Do(ctx, w, op)
					mu.Lock()
					if err != nil {
						res.Failed++
						if res.FirstErr == nil {
							res.FirstErr = err
						}
					} else {
						res.Done++
						res.Latencies = append(res.Latencies, lat)
						res.Ext[op] = ext
					}
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	res.Elapsed = time.Since(start)
	return res
}
