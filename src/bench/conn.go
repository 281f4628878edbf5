package bench

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
)

// connWorkers is how many clients connect at once from the internet host.
const connWorkers = 4

// connDialTimeout bounds one connection attempt.
const connDialTimeout = time.Second

// acceptAndClose accepts connections and closes them until ln is closed.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// connRate opens short TCP connections from the internet host (both of its
// addresses) to the router's WAN address on port for d and returns the
// completed connections per second. Each is closed with a reset (linger 0)
// so no TIME_WAIT state limits the rate. It fails if none completed.
func connRate(l *lab.Lab, port uint16, d time.Duration) (float64, error) {
	// Widen the internet host's ephemeral ports (its own namespace only).
	l.Exec(l.Inet, "sysctl", "-qw", "net.ipv4.ip_local_port_range=1024 65000")
	dst := netip.AddrPortFrom(lab.RouterWAN, port).String()
	var (
		mu       sync.Mutex
		ok, fail int
		firstErr error
		wg       sync.WaitGroup
	)
	start := time.Now()
	end := start.Add(d)
	for w := range connWorkers {
		src := lab.Inet
		if w%2 == 1 {
			src = lab.Inet2
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := lab.In(l.Inet, func() error {
				dl := net.Dialer{Timeout: connDialTimeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
				for time.Now().Before(end) {
					c, err := dl.Dial("tcp4", dst)
					mu.Lock()
					if err != nil {
						fail++
						if firstErr == nil {
							firstErr = err
						}
					} else {
						ok++
					}
					mu.Unlock()
					if err == nil {
						c.(*net.TCPConn).SetLinger(0)
						c.Close()
					}
				}
				return nil
			})
			if err != nil {
				mu.Lock()
				if firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if ok == 0 {
		return 0, fmt.Errorf("no inbound connection to port %d completed (%d failed): %v", port, fail, firstErr)
	}
	return float64(ok) / took.Seconds(), nil
}

// Bounds of the wait for a quiet router before a connection window.
const (
	quietStep  = 250 * time.Millisecond
	quietCPU   = 0.01 // seconds of daemon CPU in one step: one clock tick
	quietLimit = 5 * time.Second
)

// prepareWindow puts the router into the same state before every
// connection window, so that windows differ only in what the daemon holds:
// it waits (bounded) until the daemon has no work left from the step before
// (a fill's database checkpoint, a restart's rules) and then empties the
// router's conntrack table, which the previous windows' closed connections
// would otherwise fill to tens of thousands of entries.
func prepareWindow(e *env) error {
	if _, err := waitQuietDaemon(e.d, quietLimit); err != nil {
		return err
	}
	return lab.FlushConntrack(e.lab.Router)
}

// waitQuietDaemon waits until d has used no more than quietCPU of CPU time
// in one quietStep, for at most limit, and returns how long it waited.
func waitQuietDaemon(d *daemon, limit time.Duration) (time.Duration, error) {
	start := time.Now()
	prev, err := d.stats()
	for err == nil && time.Since(start) < limit {
		time.Sleep(quietStep)
		var cur procStats
		cur, err = d.stats()
		if err == nil && cur.CPU-prev.CPU <= quietCPU {
			break
		}
		prev = cur
	}
	if err != nil {
		return time.Since(start), fmt.Errorf("waiting for a quiet daemon: %w", err)
	}
	return time.Since(start), nil
}

// connFixture measures inbound connections in the lab under test and, in
// turn with it, in a twin lab: the same target with only the connection
// port mapped. The machine's speed drifts by a fifth within a minute (other
// guests, the host's caches), so a baseline taken minutes earlier, before
// the fill, cannot tell the cost of N pinholes from that drift; windows
// taken in turn in both labs see the same drift.
type connFixture struct {
	main, twin         *env
	mainPort, twinPort uint16 // external ports of the connection mapping
	lns                []net.Listener
}

// newConnFixture starts the connection servers in both labs, builds the
// twin lab and maps the connection port in it. main's connection port is
// already mapped to mainPort.
func newConnFixture(ctx context.Context, c Config, t Target, bin string, seq int, main *env, mainPort uint16) (*connFixture, error) {
	f := &connFixture{main: main, mainPort: mainPort}
	if err := f.serve(main); err != nil {
		return nil, err
	}
	tw, err := newEnv(c, t, bin, fmt.Sprintf("%dt", seq), 300*time.Second)
	if err != nil {
		f.close()
		return nil, fmt.Errorf("twin lab: %w", err)
	}
	f.twin = tw
	if err := f.serve(tw); err != nil {
		f.close()
		return nil, err
	}
	gen, err := NewGenerator(tw.lab, 1, 1, NATPMP, c.RequestTimeout)
	if err != nil {
		f.close()
		return nil, fmt.Errorf("twin lab: %w", err)
	}
	defer gen.Close()
	_, f.twinPort, err = gen.Do(ctx, 0, Op{Host: 0, Port: connPort, Lifetime: fillLifetime})
	if err != nil {
		f.close()
		return nil, fmt.Errorf("twin lab: mapping the connection port: %w", err)
	}
	// A fresh lab's first connections are slower (cold caches): warm
	// both up and discard it.
	if c.ConnWarmup > 0 {
		for _, s := range []struct {
			e    *env
			port uint16
		}{{main, mainPort}, {tw, f.twinPort}} {
			if err := prepareWindow(s.e); err != nil {
				f.close()
				return nil, err
			}
			if _, err := connRate(s.e.lab, s.port, c.ConnWarmup); err != nil {
				f.close()
				return nil, fmt.Errorf("connection warm-up: %w", err)
			}
		}
	}
	return f, nil
}

// serve starts a server on LAN host 0 of e's lab that accepts connections
// to connPort and closes them.
func (f *connFixture) serve(e *env) error {
	var ln net.Listener
	if err := lab.In(e.lab.LAN[0], func() error {
		var err error
		ln, err = net.Listen("tcp4", fmt.Sprintf(":%d", connPort))
		return err
	}); err != nil {
		return fmt.Errorf("connection server: %w", err)
	}
	f.lns = append(f.lns, ln)
	go acceptAndClose(ln)
	return nil
}

// close stops the servers and the twin lab (not the lab under test).
func (f *connFixture) close() {
	for _, ln := range f.lns {
		ln.Close()
	}
	if f.twin != nil {
		f.twin.close()
	}
}

// figure records the inbound connection rate in the lab under test with n
// mappings installed and in the twin lab: c.ConnWindows windows of
// c.ConnWindow in each (at least one), taken in turn, which lab goes first
// alternating. Each figure is the median of its windows, so one noisy
// window does not decide it, and each window starts from a quiet daemon and
// an empty conntrack table.
func (f *connFixture) figure(c Config, res *Results, t Target, n, run int) error {
	windows := max(1, c.ConnWindows)
	var rates, twin []float64
	measure := func(twinLab bool) error {
		e, port, into := f.main, f.mainPort, &rates
		if twinLab {
			e, port, into = f.twin, f.twinPort, &twin
		}
		err := prepareWindow(e)
		var rate float64
		if err == nil {
			rate, err = connRate(e.lab, port, c.ConnWindow)
		}
		if err != nil {
			if twinLab {
				return fmt.Errorf("twin lab: %w", err)
			}
			return err
		}
		*into = append(*into, rate)
		return nil
	}
	for w := range windows {
		// Which lab goes first alternates, so neither always follows
		// the other.
		twinFirst := w%2 == 1
		if err := measure(twinFirst); err != nil {
			return err
		}
		if err := measure(!twinFirst); err != nil {
			return err
		}
	}
	med, twMed := spreadOf(rates).Median, spreadOf(twin).Median
	res.add(Measurement{Target: t, N: n, Run: run, Metric: MConnRate, Value: med})
	res.add(Measurement{Target: t, N: n, Run: run, Metric: MConnTwin, Value: twMed})
	if twMed > 0 {
		res.add(Measurement{Target: t, N: n, Run: run, Metric: MConnRatio, Value: 100 * med / twMed})
	}
	c.Logf("  N=%d inbound connections/s: median %.0f of windows %.0f; twin lab (one pinhole) %.0f of %.0f", n, med, rates, twMed, twin)
	return nil
}
