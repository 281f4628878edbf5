package bench

import (
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

// connFigure records the inbound connection rate through port with n
// mappings installed: the median of c.ConnWindows windows of c.ConnWindow
// each (at least one), so that one noisy window does not decide it.
func connFigure(c Config, res *Results, l *lab.Lab, t Target, port uint16, n, run int) error {
	windows := max(1, c.ConnWindows)
	rates := make([]float64, 0, windows)
	for range windows {
		rate, err := connRate(l, port, c.ConnWindow)
		if err != nil {
			return err
		}
		rates = append(rates, rate)
	}
	med := spreadOf(rates).Median
	res.add(Measurement{Target: t, N: n, Run: run, Metric: MConnRate, Value: med})
	c.Logf("  N=%d inbound connections/s: median %.0f of windows %.0f", n, med, rates)
	return nil
}
