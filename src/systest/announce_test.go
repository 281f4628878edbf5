package systest

import (
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// TestAnnounceOnStart: when dpfd starts, a LAN host listening on UDP 5350
// (the all-hosts group needs no join) receives a PCP ANNOUNCE and the
// NAT-PMP external-address notice from the router's LAN address, and a
// restart that restored its leases continues the epoch rather than
// restarting it.
func TestAnnounceOnStart(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 1)

	var conn *net.UDPConn
	err := lab.In(r.lab.LAN[0], func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
			})
		}}
		pc, err := lc.ListenPacket(t.Context(), "udp4", "0.0.0.0:5350")
		if err != nil {
			return err
		}
		conn = pc.(*net.UDPConn)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	// wait reads announcements until both kinds arrived and returns
	// their epochs.
	wait := func() (pcpEpoch, natpmpEpoch uint32) {
		t.Helper()
		var gotPCP, gotNATPMP bool
		buf := make([]byte, 1500)
		deadline := time.Now().Add(10 * time.Second)
		for i := 0; i < 100 && !(gotPCP && gotNATPMP); i++ {
			conn.SetReadDeadline(deadline)
			n, src, err := conn.ReadFromUDPAddrPort(buf)
			if err != nil {
				t.Fatalf("announcements: got PCP %v, NAT-PMP %v: %v", gotPCP, gotNATPMP, err)
			}
			if src.Addr().Unmap() != lab.RouterLAN {
				t.Fatalf("announcement from %s, want the router's LAN address", src)
			}
			switch buf[0] {
			case pcp.Version:
				resp, err := pcp.ParseResponse(buf[:n])
				if err != nil || resp.Op != pcp.OpAnnounce || resp.Result != 0 {
					t.Fatalf("bad ANNOUNCE %x: %v", buf[:n], err)
				}
				gotPCP, pcpEpoch = true, resp.Epoch
			case natpmp.Version:
				resp, err := natpmp.ParseResponse(buf[:n])
				if err != nil || resp.Op != natpmp.OpPublicAddress || resp.ExternalAddr != lab.RouterWAN {
					t.Fatalf("bad NAT-PMP notice %x (%+v): %v", buf[:n], resp, err)
				}
				gotNATPMP, natpmpEpoch = true, resp.Epoch
			}
		}
		return pcpEpoch, natpmpEpoch
	}

	r.start()
	e1, _ := wait()
	if _, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2100 * time.Millisecond) // let the epoch advance
	r.kill(syscall.SIGTERM)
	// Drain what the first run still queued.
	conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	for i := 0; i < 50; i++ {
		if _, _, err := conn.ReadFromUDPAddrPort(make([]byte, 1500)); err != nil {
			break
		}
	}
	r.start()
	e2, n2 := wait()
	if e2 < e1+2 || n2 < e1+2 {
		t.Fatalf("epoch after a restart with restored leases: PCP %d, NAT-PMP %d; want at least %d (continued)", e2, n2, e1+2)
	}
}
