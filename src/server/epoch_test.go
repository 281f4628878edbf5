package server

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/ifaddr"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/internal/testenv"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// TestResetEpoch: the epoch counts from EpochBase, starts again at 0 on
// ResetEpoch, and every response carries it.
func TestResetEpoch(t *testing.T) {
	r := newRig(t)
	r.s.cfg.EpochBase = 1000
	r.clk.Advance(50 * time.Second)
	if e := r.s.Epoch(); e != 1050 {
		t.Fatalf("Epoch = %d, want 1050", e)
	}
	r.ext = netip.MustParseAddr("203.0.113.77")
	r.s.ResetEpoch()
	if e := r.s.Epoch(); e != 0 {
		t.Fatalf("Epoch after reset = %d, want 0", e)
	}
	r.clk.Advance(3 * time.Second)
	resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpPublicAddress})
	if resp.Epoch != 3 || resp.ExternalAddr != r.ext {
		t.Fatalf("public address after reset: %+v", resp)
	}
	b := r.s.Handle(pcp.Request{Version: pcp.Version, Op: pcp.OpAnnounce, ClientAddr: hostA.Addr()}.AppendTo(nil), hostA)
	if p, err := pcp.ParseResponse(b); err != nil || p.Epoch != 3 {
		t.Fatalf("ANNOUNCE after reset: %+v %v", p, err)
	}
	// A second reset starts again.
	r.s.ResetEpoch()
	if e := r.s.Epoch(); e != 0 {
		t.Fatalf("Epoch after a second reset = %d", e)
	}
}

// TestAnnounceNow: Announce sends a PCP ANNOUNCE and the NAT-PMP notice
// with the current epoch and address on the LAN socket at once, and again
// on the RFC schedule. It runs the server
// in a lab router namespace and listens on a LAN host, as a client would.
func TestAnnounceNow(t *testing.T) {
	testenv.RequireRoot(t)
	l, err := lab.New(fmt.Sprintf("dpfsrv%d", os.Getpid()%100000), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Error(err)
		}
	})
	if err := lab.In(l.Router, func() error { _, err := ifaddr.IPv4("br-lan"); return err }); err != nil {
		// qemu-user (make qemu-test) garbles some of the kernel's
		// address dumps for a foreign byte order; natively this works.
		if os.Getenv(testenv.RequireRootEnv) == "1" {
			t.Fatalf("cannot read the LAN bridge's addresses: %v", err)
		}
		t.Skipf("skipping: cannot read the LAN bridge's addresses here (an emulator?): %v", err)
	}
	var conn *net.UDPConn
	err = lab.In(l.LAN[0], func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
		pc, err := lc.ListenPacket(t.Context(), "udp4", "0.0.0.0:5350")
		if err == nil {
			conn = pc.(*net.UDPConn)
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	r := newRig(t)
	var ext atomic.Pointer[netip.Addr]
	a := lab.RouterWAN
	ext.Store(&a)
	r.s.cfg.ExternalAddr = func() netip.Addr { return *ext.Load() }
	r.s.cfg.LANInterfaces = []string{"br-lan"}
	r.s.cfg.EpochBase = 500
	ctx, cancel := context.WithCancel(t.Context())
	served := make(chan error, 1)
	go func() {
		// Serve opens its sockets on this goroutine's thread, in the
		// router's namespace.
		served <- lab.In(l.Router, func() error { return r.s.Serve(ctx) })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-served; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})

	type msg struct {
		pcp   bool
		epoch uint32
		addr  netip.Addr
		at    time.Time
	}
	read := func(within time.Duration) (msg, bool) {
		t.Helper()
		buf := make([]byte, 1500)
		conn.SetReadDeadline(time.Now().Add(within))
		n, src, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			return msg{}, false
		}
		if src.Addr().Unmap() != lab.RouterLAN {
			t.Fatalf("announcement from %v", src)
		}
		m := msg{at: time.Now()}
		switch buf[0] {
		case pcp.Version:
			p, err := pcp.ParseResponse(buf[:n])
			if err != nil || p.Op != pcp.OpAnnounce {
				t.Fatalf("bad ANNOUNCE %x: %v", buf[:n], err)
			}
			m.pcp, m.epoch = true, p.Epoch
		default:
			p, err := natpmp.ParseResponse(buf[:n])
			if err != nil || p.Op != natpmp.OpPublicAddress {
				t.Fatalf("bad notice %x: %v", buf[:n], err)
			}
			m.epoch, m.addr = p.Epoch, p.ExternalAddr
		}
		return m, true
	}

	// The schedule of the socket's opening: rounds at 0, 250 ms, 750 ms,
	// 1.75 s, 3.75 s. Wait for the fourth round, after which the next
	// is two seconds away.
	rounds := 0
	deadline := time.Now().Add(20 * time.Second)
	for rounds < 4 {
		m, ok := read(time.Until(deadline))
		if !ok {
			t.Fatalf("only %d start-up rounds", rounds)
		}
		if m.pcp {
			rounds++
		}
	}
	// The round's NAT-PMP notice follows its ANNOUNCE at once.
	for range 20 {
		if _, ok := read(100 * time.Millisecond); !ok {
			break
		}
	}
	newAddr := netip.MustParseAddr("203.0.113.66")
	ext.Store(&newAddr)
	r.s.ResetEpoch()
	start := time.Now()
	if n := r.s.Announce(); n != 1 {
		t.Fatalf("Announce on %d sockets, want 1", n)
	}
	// Within the next 1.5 s: Announce's rounds at 0 and 250 ms (and
	// 750 ms), so at least two of each kind, all with the new epoch and
	// address.
	var pcps, notices int
	for time.Since(start) < 1500*time.Millisecond {
		m, ok := read(1500*time.Millisecond - time.Since(start))
		if !ok {
			break
		}
		if m.epoch > 1 {
			t.Fatalf("announcement with epoch %d after the reset", m.epoch)
		}
		if m.pcp {
			pcps++
		} else {
			notices++
			if m.addr != newAddr {
				t.Fatalf("notice with address %v, want %v", m.addr, newAddr)
			}
		}
	}
	if pcps < 2 || notices < 2 {
		t.Fatalf("%d ANNOUNCEs and %d notices within 1.5 s of Announce, want at least 2 each", pcps, notices)
	}
}
