package systest

// Authenticated requests with the real dpfd, dpf and natpmpc in the lab:
// option auth 'optional' and 'required', keys in config key sections,
// signed requests from dpf --key-file and raw PCP packets, and the client
// against miniupnpd, which does not know DPF's AUTH option.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// Keys of the auth tests: alice may only be used from LAN host 0, bob from
// anywhere; mallory's is configured nowhere.
var (
	aliceKey   = bytes.Repeat([]byte{0xa1}, 32)
	bobKey     = bytes.Repeat([]byte{0xb0}, 32)
	malloryKey = bytes.Repeat([]byte{0x66}, 32)
)

// authPort is the well-known port authenticated clients get. Not 80 or
// 443: the router may reserve those for itself (reserved_ports).
const authPort = 993

// authExchangeWait bounds one raw request/answer exchange with dpfd.
const authExchangeWait = 3 * time.Second

// authConfig is the configuration tail for mode: keys alice and bob.
func authConfig(mode string) string {
	return fmt.Sprintf(`	option auth '%s'
config key 'alice'
	option secret '%s'
	list address '%s'
config key 'bob'
	option secret '%s'
`, mode, pcp.FormatAuthKey(aliceKey), lab.LANHost(0), pcp.FormatAuthKey(bobKey))
}

// keyFile writes key to a private file for dpf --key-file.
func (r *router) keyFile(name string, key []byte) string {
	r.t.Helper()
	p := filepath.Join(r.dir, name+".key")
	if err := os.WriteFile(p, []byte(pcp.FormatAuthKey(key)+"\n"), 0o600); err != nil {
		r.t.Fatal(err)
	}
	return p
}

// rawPCP sends req from LAN host n (source address src) to dpfd and
// returns the answer, nil if none came within authExchangeWait.
func (r *router) rawPCP(n int, src netip.Addr, req []byte) []byte {
	r.t.Helper()
	reply, err := udpExchange(r.lab.LAN[n], src, netip.AddrPortFrom(lab.RouterLAN, pcp.ServerPort), req, authExchangeWait)
	if err != nil {
		r.t.Fatal(err)
	}
	return reply
}

// mapReq is an encoded PCP MAP request from client (the address field).
func mapReq(client netip.Addr, nonce byte, in, ext uint16, life uint32) []byte {
	m := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: life, ClientAddr: client,
		Map: pcp.MapData{Protocol: 6, InternalPort: in, ExternalPort: ext, ExternalAddr: netip.IPv4Unspecified()}}
	m.Map.Nonce[0] = nonce
	return m.AppendTo(nil)
}

// spoof sends reqs to dpfd from LAN host n with the source address src,
// which is not its own (IP_TRANSPARENT); the answers go to src's owner.
func (r *router) spoof(n int, src netip.Addr, reqs ...[]byte) {
	r.t.Helper()
	err := lab.In(r.lab.LAN[n], func() error {
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_IP, syscall.IP_TRANSPARENT, 1)
			})
			return errors.Join(err, serr)
		}}
		pc, err := lc.ListenPacket(context.Background(), "udp4", netip.AddrPortFrom(src, 0).String())
		if err != nil {
			return err
		}
		defer pc.Close()
		dst := net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.RouterLAN, pcp.ServerPort))
		for _, req := range reqs {
			if _, err := pc.WriteTo(req, dst); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		r.t.Fatalf("spoofing %s: %v", src, err)
	}
}

func signReq(t *testing.T, req, key []byte) []byte {
	t.Helper()
	b, err := pcp.SignRequest(req, key, uint64(time.Now().UnixNano()))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// pcpResult returns the result code of a PCP answer, failing when there is
// none.
func pcpResult(t *testing.T, reply []byte) uint8 {
	t.Helper()
	if len(reply) < pcp.ResponseHeaderSize || reply[0] != pcp.Version {
		t.Fatalf("no PCP answer: %x", reply)
	}
	return reply[3]
}

func (r *router) lease(proto string, port uint16) (control.Lease, bool) {
	for _, l := range r.leases() {
		if l.Proto == proto && l.ExternalPort == port {
			return l, true
		}
	}
	return control.Lease{}, false
}

func (r *router) refused() uint64 {
	r.t.Helper()
	var st control.Status
	if err := control.Call(filepath.Join(r.dir, "dpfd.sock"), control.MethodStatus, nil, &st); err != nil {
		r.t.Fatal(err)
	}
	return st.Counters["refused"]
}

// TestAuthOptional: with option auth 'optional', dpf expose --key-file
// gets a well-known port that unauthenticated natpmpc and PCP cannot; the
// keyed lease cannot be renewed or deleted without its key, not even by a
// LAN host spoofing its owner's address; unknown keys, keys used from the
// wrong host and replays get NOT_AUTHORIZED; and the replay state
// survives a restart.
func TestAuthOptional(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 2)
	r.writeConfig(authConfig("optional"))
	r.start()
	host0, host1 := lab.LANHost(0), lab.LANHost(1)

	// dpf expose with alice's key: the well-known port.
	r.echoServers(0, authPort)
	r.mustNotReach("tcp", authPort)
	p := r.startDPF(r.lab.LAN[0], "expose", "--key-file", r.keyFile("alice", aliceKey), "--description", "signed", "tcp", fmt.Sprint(authPort))
	line := p.expect(t, "is reachable at", 30*time.Second)
	if want := fmt.Sprintf("reachable at %s:%d", lab.RouterWAN, authPort); !strings.Contains(line, want) {
		t.Fatalf("dpf expose said %q, want %q", line, want)
	}
	r.mustReach("tcp", authPort)
	if l, ok := r.lease("tcp", authPort); !ok || l.Auth != "alice" || l.Description != "signed" {
		t.Fatalf("lease %+v, want tcp/%d with key alice", l, authPort)
	}
	if out, err := r.dpfd("list"); err != nil || !strings.Contains(out, "pcp key alice") {
		t.Fatalf("dpfd list does not show the key: %v\n%s", err, out)
	}

	// Unauthenticated clients cannot have a port below 1024.
	if port, out, err := r.natpmpc(1, "-a", "994", "994", "tcp", "3600"); err == nil {
		t.Fatalf("natpmpc got port %d below 1024 without a key:\n%s", port, out)
	}
	if res := pcpResult(t, r.rawPCP(1, host1, mapReq(host1, 1, 995, 995, 600))); res != pcp.ResultNotAuthorized {
		t.Fatalf("unauthenticated PCP for port 995: %s, want NOT_AUTHORIZED", pcp.ResultString(res))
	}
	// They keep the unprivileged ports.
	if _, out, err := r.natpmpc(1, "-a", "8080", "8080", "tcp", "3600"); err != nil {
		t.Fatalf("natpmpc for 8080: %v\n%s", err, out)
	}

	// A keyed lease with a nonce the test knows: signed request from
	// host 0, signed answer.
	create := signReq(t, mapReq(host0, 7, 9000, 990, 600), aliceKey)
	reply := r.rawPCP(0, host0, create)
	if res := pcpResult(t, reply); res != pcp.ResultSuccess {
		t.Fatalf("signed MAP: %s", pcp.ResultString(res))
	}
	if a, err := pcp.VerifyResponse(reply, aliceKey); err != nil || a.Seq == 0 {
		t.Fatalf("answer not signed with alice's key: %v", err)
	}
	if resp, _ := pcp.ParseResponse(reply); resp.Map.ExternalPort != 990 {
		t.Fatalf("granted port %d, want 990", resp.Map.ExternalPort)
	}
	// And an unauthenticated one (the control case below).
	if res := pcpResult(t, r.rawPCP(0, host0, mapReq(host0, 8, 9001, 9001, 600))); res != pcp.ResultSuccess {
		t.Fatalf("unsigned MAP 9001: %s", pcp.ResultString(res))
	}

	// The owner's host without the key, or with another key: refused.
	deleteKeyed := mapReq(host0, 7, 9000, 0, 0)
	if res := pcpResult(t, r.rawPCP(0, host0, deleteKeyed)); res != pcp.ResultNotAuthorized {
		t.Fatalf("unsigned delete of the keyed lease: %s", pcp.ResultString(res))
	}
	reply = r.rawPCP(0, host0, signReq(t, deleteKeyed, bobKey))
	if res := pcpResult(t, reply); res != pcp.ResultNotAuthorized {
		t.Fatalf("delete with bob's key: %s", pcp.ResultString(res))
	}
	if _, err := pcp.VerifyResponse(reply, bobKey); err != nil {
		t.Fatalf("refusal to a verified key is not signed: %v", err)
	}

	// Another LAN host spoofing host 0's address: it cannot delete (or
	// renew) the keyed lease, while the same spoof does delete the
	// unauthenticated one, which shows the spoof reaches dpfd. The
	// answers go to host 0, so the test looks at dpfd's leases.
	refusedBefore := r.refused()
	r.spoof(1, host0, deleteKeyed, mapReq(host0, 7, 9000, 990, 3600), mapReq(host0, 8, 9001, 0, 0))
	// There is no answer to wait for: poll until dpfd has handled all
	// three (the last deletes the unauthenticated lease).
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		_, still := r.lease("tcp", 9001)
		n := r.refused() - refusedBefore
		if !still && n >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the spoofed requests: unauthenticated lease still there %v, %d refused (want gone, 2)", still, n)
		}
	}
	if l, ok := r.lease("tcp", 990); !ok || l.Auth != "alice" || l.Lifetime != 600 {
		t.Fatalf("keyed lease after the spoofed requests: %+v, %v (want it untouched, lifetime 600)", l, ok)
	}

	// Alice's key from host 1 (not in its list address), an unknown key,
	// a replay: NOT_AUTHORIZED, unsigned.
	for name, tc := range map[string]struct {
		n   int
		src netip.Addr
		req []byte
	}{
		"alice's key from host 1": {1, host1, signReq(t, mapReq(host1, 9, 9100, 991, 600), aliceKey)},
		"unknown key":             {1, host1, signReq(t, mapReq(host1, 9, 9100, 991, 600), malloryKey)},
		"replay":                  {0, host0, create},
	} {
		reply := r.rawPCP(tc.n, tc.src, tc.req)
		if res := pcpResult(t, reply); res != pcp.ResultNotAuthorized {
			t.Errorf("%s: %s, want NOT_AUTHORIZED", name, pcp.ResultString(res))
		}
		if _, found, _ := pcp.ParseAuth(reply); found {
			t.Errorf("%s: the refusal carries an AUTH option", name)
		}
	}

	// dpf with a key dpfd does not know: a clear refusal, no mapping.
	bad := r.startDPF(r.lab.LAN[1], "expose", "--key-file", r.keyFile("mallory", malloryKey), "tcp", "996")
	bad.expect(t, "NOT_AUTHORIZED", 30*time.Second)
	if _, ok := r.lease("tcp", 996); ok {
		t.Fatal("a lease for an unknown key")
	}

	// dpf expose releases its lease with the key on SIGTERM.
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "released", 10*time.Second)
	if _, ok := r.lease("tcp", authPort); ok {
		t.Fatal("keyed lease not released")
	}

	// A restart keeps the replay state: the creating request, captured
	// before, is still refused; a fresh one is served.
	r.kill(syscall.SIGTERM)
	r.start()
	if res := pcpResult(t, r.rawPCP(0, host0, create)); res != pcp.ResultNotAuthorized {
		t.Fatalf("replay after a restart: %s, want NOT_AUTHORIZED", pcp.ResultString(res))
	}
	if res := pcpResult(t, r.rawPCP(0, host0, signReq(t, mapReq(host0, 7, 9000, 990, 600), aliceKey))); res != pcp.ResultSuccess {
		t.Fatalf("fresh signed request after the restart: %s", pcp.ResultString(res))
	}
}

// TestAuthRequired: with option auth 'required', natpmpc and unsigned PCP
// are refused while dpf with a key works; NAT-PMP still answers the
// external-address request; a reload to 'optional' lets natpmpc in again.
func TestAuthRequired(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 1)
	r.writeConfig(authConfig("required"))
	r.start()
	host0 := lab.LANHost(0)
	r.echoServers(0, 8080)

	if port, out, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600"); err == nil {
		t.Fatalf("natpmpc got port %d with auth required:\n%s", port, out)
	}
	gw := netip.AddrPortFrom(lab.RouterLAN, natpmp.ServerPort)
	reply, err := udpExchange(r.lab.LAN[0], host0, gw, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600}.AppendTo(nil), authExchangeWait)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := natpmp.ParseResponse(reply); err != nil || resp.Result != natpmp.ResultNotAuthorized {
		t.Fatalf("NAT-PMP map: %+v, %v; want result 2", resp, err)
	}
	reply, err = udpExchange(r.lab.LAN[0], host0, gw, natpmp.Request{Op: natpmp.OpPublicAddress}.AppendTo(nil), authExchangeWait)
	if err != nil {
		t.Fatal(err)
	}
	if resp, err := natpmp.ParseResponse(reply); err != nil || resp.Result != natpmp.ResultSuccess || resp.ExternalAddr != lab.RouterWAN {
		t.Fatalf("NAT-PMP address: %+v, %v", resp, err)
	}
	if res := pcpResult(t, r.rawPCP(0, host0, mapReq(host0, 1, 8080, 8080, 600))); res != pcp.ResultNotAuthorized {
		t.Fatalf("unsigned PCP MAP: %s, want NOT_AUTHORIZED", pcp.ResultString(res))
	}
	if len(r.leases()) != 0 {
		t.Fatalf("leases: %+v", r.leases())
	}
	r.mustNotReach("tcp", 8080)

	p := r.startDPF(r.lab.LAN[0], "--key-file", r.keyFile("alice", aliceKey), "expose", "tcp", "8080")
	line := p.expect(t, "is reachable at", 30*time.Second)
	if want := fmt.Sprintf("reachable at %s:8080", lab.RouterWAN); !strings.Contains(line, want) {
		t.Fatalf("dpf expose said %q, want %q", line, want)
	}
	r.mustReach("tcp", 8080)
	if l, ok := r.lease("tcp", 8080); !ok || l.Auth != "alice" {
		t.Fatalf("lease %+v, want key alice", l)
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "released", 10*time.Second)
	r.mustNotReach("tcp", 8080)

	// A reload to 'optional' applies at once: NAT-PMP works again.
	r.writeConfig(authConfig("optional"))
	if out, err := r.dpfd("reload"); err != nil {
		t.Fatalf("dpfd reload: %v\n%s", err, out)
	}
	if _, out, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600"); err != nil {
		t.Fatalf("natpmpc after the reload to optional: %v\n%s", err, out)
	}
	r.mustReach("tcp", 8080)
}

// TestAuthClientMiniupnpd: the client with a key against miniupnpd, which
// does not know DPF's AUTH option, fails with the clear "does not support"
// error instead of getting an unauthenticated mapping (no PCP without the
// option, no NAT-PMP).
func TestAuthClientMiniupnpd(t *testing.T) {
	needTools(t)
	needMiniupnpd(t)
	r := newRouter(t, "nftables", 1)
	r.startSTUN()
	mu := r.startMiniupnpd()
	defer r.stopMiniupnpd(mu, syscall.SIGTERM)
	kf := r.keyFile("alice", aliceKey)
	// dpf expose sends a DESCRIPTION option before the AUTH option, over
	// which miniupnpd 2.3 trips (MALFORMED_OPTION); dpf status sends a
	// bare signed ANNOUNCE (UNSUPP_OPTION). Both are the same clear error.
	p := r.startDPF(r.lab.LAN[0], "expose", "--key-file", kf, "tcp", "8080")
	p.expect(t, "the gateway does not support DPF authentication", 30*time.Second)
	st := r.startDPF(r.lab.LAN[0], "status", "--key-file", kf)
	st.expect(t, "the gateway does not support DPF authentication", 30*time.Second)
	out, err := r.lab.Output(5*time.Second, r.lab.Router, "nft", "list", "chain", "inet", "filter", "prerouting_miniupnpd")
	if err != nil || strings.Contains(out, "dnat") {
		t.Fatalf("miniupnpd's chain (%v):\n%s", err, out)
	}
}
