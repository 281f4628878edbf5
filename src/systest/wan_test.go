package systest

import (
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// wanWithin is how soon after the WAN address changes everything must say
// so: "within about a second" is the aim (dpfd follows the kernel's address
// notifications); the rest is slack for a loaded machine.
const wanWithin = 5 * time.Second

// newWAN is the router's WAN address after the change: same /24 as before,
// so the internet host reaches it on its link.
var newWAN = netip.MustParseAddr("203.0.113.10")

// TestWANAddressChange: the router's WAN address changes from 203.0.113.1
// to 203.0.113.10 while LAN hosts hold mappings made with natpmpc, with raw
// PCP and with the client library. Within seconds dpfd announces the change
// on the LAN (a PCP ANNOUNCE whose epoch went back, and the NAT-PMP notice
// with the new address), answers with the new address (NAT-PMP address
// request, PCP renewal), shows it in `dpfd status`, the library reports
// its mapping's new external address, and every pinhole forwards what the
// internet host sends to the new address. Then the WAN goes down (requests
// get NETWORK_FAILURE) and comes back with the same address: no reset.
func TestWANAddressChange(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) { testWANAddressChange(t, be) })
	}
}

func testWANAddressChange(t *testing.T, be string) {
	r := newRouter(t, be, 3)
	ann := listenAnnouncements(t, r.lab.LAN[0])
	r.start()

	// LAN host 0: natpmpc. LAN host 1: a PCP client. LAN host 2: the
	// client library.
	r.echoServers(0, 8080)
	r.echoServers(1, 9000)
	natExt, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	mapReq := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: 600, ClientAddr: lab.LANHost(1),
		Map: pcp.MapData{Protocol: 6, InternalPort: 9000, ExternalPort: 9000}}
	copy(mapReq.Map.Nonce[:], "wan-test-nce")
	pcpResp := r.pcpMap(t, mapReq)
	if pcpResp.Map.ExternalAddr != lab.RouterWAN {
		t.Fatalf("PCP MAP: external address %v, want %v", pcpResp.Map.ExternalAddr, lab.RouterWAN)
	}
	pcpExt := pcpResp.Map.ExternalPort
	role := r.startRole(r.lab.LAN[2], "listen", "DPF_ROLE_NET=tcp4", "DPF_ROLE_ADDR=0.0.0.0:7070")
	libExt := publicPort(t, role.expect(r, "PUBLIC", 30*time.Second))
	for _, port := range []uint16{natExt, pcpExt, libExt} {
		if err := r.reachAt(lab.RouterWAN, port); err != nil {
			t.Fatalf("port %d before the change: %v", port, err)
		}
	}

	// Let the epoch grow, so that its going back is plain to clients
	// (the epoch check allows for clock drift).
	time.Sleep(3 * time.Second)
	before := r.publicAddress(t)
	if before.Result != natpmp.ResultSuccess || before.ExternalAddr != lab.RouterWAN || before.Epoch < 3 {
		t.Fatalf("before the change: %+v", before)
	}
	drain(ann)

	// The change, as a DHCP client makes it: the old address goes, the
	// new one comes.
	changed := time.Now()
	r.routerIP(t, "addr", "del", lab.RouterWAN.String()+"/24", "dev", "wan0")
	r.routerIP(t, "addr", "add", newWAN.String()+"/24", "dev", "wan0")

	// The announcements.
	var gotPCP, gotNATPMP bool
	buf := make([]byte, 1500)
	for i := 0; i < 100 && !(gotPCP && gotNATPMP); i++ {
		ann.SetReadDeadline(changed.Add(wanWithin))
		n, src, err := ann.ReadFromUDPAddrPort(buf)
		if err != nil {
			t.Fatalf("announcements within %v: PCP %v, NAT-PMP %v: %v", wanWithin, gotPCP, gotNATPMP, err)
		}
		if src.Addr().Unmap() != lab.RouterLAN {
			continue
		}
		switch buf[0] {
		case pcp.Version:
			resp, err := pcp.ParseResponse(buf[:n])
			if err != nil || resp.Op != pcp.OpAnnounce {
				t.Fatalf("bad ANNOUNCE %x: %v", buf[:n], err)
			}
			if resp.Epoch >= before.Epoch {
				t.Fatalf("ANNOUNCE epoch %d, want below %d (reset)", resp.Epoch, before.Epoch)
			}
			if !gotPCP {
				t.Logf("ANNOUNCE with epoch %d (was %d) %v after the change", resp.Epoch, before.Epoch, time.Since(changed).Round(time.Millisecond))
			}
			gotPCP = true
		case natpmp.Version:
			resp, err := natpmp.ParseResponse(buf[:n])
			if err != nil || resp.Op != natpmp.OpPublicAddress {
				t.Fatalf("bad NAT-PMP notice %x: %v", buf[:n], err)
			}
			if resp.ExternalAddr != newWAN {
				t.Fatalf("NAT-PMP notice with address %v, want %v", resp.ExternalAddr, newWAN)
			}
			if !gotNATPMP {
				t.Logf("NAT-PMP notice of %v %v after the change", resp.ExternalAddr, time.Since(changed).Round(time.Millisecond))
			}
			gotNATPMP = true
		}
	}

	// Answers carry the new address and the new epoch.
	after := r.publicAddress(t)
	if after.Result != natpmp.ResultSuccess || after.ExternalAddr != newWAN || after.Epoch >= before.Epoch {
		t.Fatalf("NAT-PMP address after the change: %+v (epoch before %d)", after, before.Epoch)
	}
	renew := r.pcpMap(t, mapReq)
	if renew.Map.ExternalAddr != newWAN || renew.Map.ExternalPort != pcpExt || renew.Epoch >= before.Epoch {
		t.Fatalf("PCP renewal after the change: %+v", renew)
	}
	out, err := r.dpfd("status", "--json")
	var st control.Status
	if err != nil || json.Unmarshal([]byte(out), &st) != nil || st.ExternalAddress != newWAN.String() {
		t.Fatalf("dpfd status: %v\n%s", err, out)
	}
	if out, err := r.dpfd("status"); err != nil || !strings.Contains(out, newWAN.String()) {
		t.Fatalf("dpfd status: %v\n%s", err, out)
	}

	// The library learns the new address of its mapping.
	for deadline := changed.Add(wanWithin + 5*time.Second); ; {
		ev := role.expect(r, "EVENT", time.Until(deadline))
		if strings.Contains(ev, newWAN.String()) {
			t.Logf("library event %q %v after the change", ev, time.Since(changed).Round(time.Millisecond))
			break
		}
	}

	// Every pinhole forwards what is sent to the new address.
	for _, port := range []uint16{natExt, pcpExt, libExt} {
		if err := r.reachAt(newWAN, port); err != nil {
			t.Fatalf("port %d at the new address: %v", port, err)
		}
	}
	if took := time.Since(changed); took > wanWithin+10*time.Second {
		t.Errorf("all of it took %v", took)
	} else {
		t.Logf("all checks done %v after the change", took.Round(time.Millisecond))
	}

	// WAN down: NETWORK_FAILURE. Back with the same address: the epoch
	// goes on (the mappings were never wrong), no new reset.
	resets := strings.Count(r.logBuf.String(), "epoch reset")
	epoch := r.publicAddress(t).Epoch
	r.routerIP(t, "addr", "del", newWAN.String()+"/24", "dev", "wan0")
	r.waitPublicAddress(t, natpmp.ResultNetworkFailure)
	r.routerIP(t, "addr", "add", newWAN.String()+"/24", "dev", "wan0")
	back := r.waitPublicAddress(t, natpmp.ResultSuccess)
	if back.ExternalAddr != newWAN || back.Epoch < epoch {
		t.Fatalf("after the WAN came back with the same address: %+v (epoch before %d)", back, epoch)
	}
	if n := strings.Count(r.logBuf.String(), "epoch reset"); n != resets {
		t.Errorf("epoch reset again when the same address came back (%d resets, were %d)", n, resets)
	}
	if err := r.reachAt(newWAN, natExt); err != nil {
		t.Fatalf("port %d after the WAN came back: %v", natExt, err)
	}

	// Restarts. With the same address the restored epoch goes on.
	epoch = r.publicAddress(t).Epoch
	r.kill(syscall.SIGTERM)
	r.start()
	if st := r.publicAddress(t); st.ExternalAddr != newWAN || st.Epoch < epoch {
		t.Fatalf("after a restart on the same address: %+v (epoch before %d)", st, epoch)
	}
	// The address changed while dpfd was stopped: the epoch starts again.
	time.Sleep(2 * time.Second) // let the epoch grow, so that a reset shows
	epoch = r.publicAddress(t).Epoch
	r.kill(syscall.SIGTERM)
	r.routerIP(t, "addr", "del", newWAN.String()+"/24", "dev", "wan0")
	r.routerIP(t, "addr", "add", lab.RouterWAN.String()+"/24", "dev", "wan0")
	r.start()
	if st := r.publicAddress(t); st.ExternalAddr != lab.RouterWAN || st.Epoch >= epoch {
		t.Fatalf("after a restart on a new address: %+v, want %s and an epoch below %d", st, lab.RouterWAN, epoch)
	}
	if !strings.Contains(r.logBuf.String(), "external address changed while dpfd was stopped") {
		t.Errorf("no log line about the address that changed while dpfd was stopped")
	}
	if err := r.reachAt(lab.RouterWAN, natExt); err != nil {
		t.Fatalf("port %d at %s after the restart: %v", natExt, lab.RouterWAN, err)
	}
	// Started with the WAN down, the address that then appears is
	// compared with the saved one: a new one resets the epoch.
	time.Sleep(2 * time.Second)
	epoch = r.publicAddress(t).Epoch
	r.kill(syscall.SIGTERM)
	r.routerIP(t, "addr", "del", lab.RouterWAN.String()+"/24", "dev", "wan0")
	r.start()
	r.waitPublicAddress(t, natpmp.ResultNetworkFailure)
	resets = strings.Count(r.logBuf.String(), "epoch reset to 0, new address")
	r.routerIP(t, "addr", "add", newWAN.String()+"/24", "dev", "wan0")
	if st := r.waitPublicAddress(t, natpmp.ResultSuccess); st.ExternalAddr != newWAN || st.Epoch >= epoch {
		t.Fatalf("after the WAN came up with a new address: %+v, want %s and an epoch below %d", st, newWAN, epoch)
	}
	if n := strings.Count(r.logBuf.String(), "epoch reset to 0, new address"); n != resets+1 {
		t.Errorf("%d epoch resets logged when the WAN came up with a new address, want %d", n, resets+1)
	}
	if err := r.reachAt(newWAN, natExt); err != nil {
		t.Fatalf("port %d at %s after the WAN came up: %v", natExt, newWAN, err)
	}
}

// listenAnnouncements listens on UDP port 5350 in namespace ns, where the
// all-hosts group's datagrams arrive without a join.
func listenAnnouncements(t *testing.T, ns string) *net.UDPConn {
	t.Helper()
	var conn *net.UDPConn
	err := lab.In(ns, func() error {
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
	t.Cleanup(func() { conn.Close() })
	return conn
}

// drain discards what conn has queued (bounded).
func drain(conn *net.UDPConn) {
	buf := make([]byte, 1500)
	for range 100 {
		conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		if _, _, err := conn.ReadFromUDPAddrPort(buf); err != nil {
			return
		}
	}
}

// routerIP runs ip(8) in the router namespace.
func (r *router) routerIP(t *testing.T, args ...string) {
	t.Helper()
	if out, err := r.lab.Output(20*time.Second, r.lab.Router, "ip", args...); err != nil {
		t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// publicAddress asks the router for its address with NAT-PMP from LAN host 0.
func (r *router) publicAddress(t *testing.T) natpmp.Response {
	t.Helper()
	reply, err := r.ask([]byte{0, 0}, 3*time.Second)
	if err != nil || reply == nil {
		t.Fatalf("no reply to a public address request: %v", err)
	}
	resp, err := natpmp.ParseResponse(reply)
	if err != nil {
		t.Fatalf("public address reply %x: %v", reply, err)
	}
	return resp
}

// waitPublicAddress asks until the result is want (bounded).
func (r *router) waitPublicAddress(t *testing.T, want uint16) natpmp.Response {
	t.Helper()
	deadline := time.Now().Add(wanWithin)
	for {
		resp := r.publicAddress(t)
		if resp.Result == want {
			return resp
		}
		if time.Now().After(deadline) {
			t.Fatalf("public address: %+v; want result %d within %v", resp, want, wanWithin)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// pcpMap sends a PCP MAP request from LAN host 1 and returns the
// successful response.
func (r *router) pcpMap(t *testing.T, req pcp.Request) pcp.Response {
	t.Helper()
	reply, err := udpExchange(r.lab.LAN[1], lab.LANHost(1), netip.AddrPortFrom(lab.RouterLAN, 5351), req.AppendTo(nil), 3*time.Second)
	if err != nil || reply == nil {
		t.Fatalf("no reply to PCP MAP: %v", err)
	}
	resp, err := pcp.ParseResponse(reply)
	if err != nil || resp.Result != pcp.ResultSuccess {
		t.Fatalf("PCP MAP: %+v %v", resp, err)
	}
	return resp
}

// reachAt makes a TCP round trip from the internet host to dst:port.
func (r *router) reachAt(dst netip.Addr, port uint16) error {
	return r.reachTo("tcp", netip.Addr{}, dst, port)
}
