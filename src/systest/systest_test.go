// Package systest runs dpfd for real: in network namespaces with real
// netfilter (nftables and iptables), driven by Debian's natpmpc and by raw
// PCP packets, with traffic from an internet host through the pinholes.
// It needs root; where DPF_REQUIRE_ROOT_TESTS=1 (CI) a skip is a failure.
package systest

import (
	"net/netip"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/internal/testenv"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

var backends = []string{"nftables", "iptables"}

func needTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"ip", "natpmpc", "nft", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs it): %v", tool, err)
		}
	}
}

// TestNATPMPClientThroughRouter: natpmpc maps TCP and UDP ports, the
// internet host reaches the LAN servers through them, and delete and expiry
// close them again.
func TestNATPMPClientThroughRouter(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 1)
			r.start()
			r.echoServers(0, 8080)
			r.echoServers(0, 9053)
			r.mustNotReach("tcp", 8080)

			ext, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			if ext != 8080 {
				t.Fatalf("granted external port %d, want the suggested 8080", ext)
			}
			r.mustReach("tcp", 8080)
			uext, _, err := r.natpmpc(0, "-a", "9053", "9053", "udp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			r.mustReach("udp", uext)

			ls := r.leases()
			if len(ls) != 2 || ls[0].InternalAddr != lab.LANHost(0).String() || ls[0].Origin != "natpmp" {
				t.Fatalf("leases: %+v", ls)
			}

			// Delete (lifetime 0) closes the TCP pinhole at once.
			if _, out, _ := r.natpmpc(0, "-a", "8080", "8080", "tcp", "0"); !strings.Contains(out, "lifetime 0") && !strings.Contains(out, "liftime 0") {
				t.Logf("natpmpc delete output: %s", out)
			}
			r.mustNotReach("tcp", 8080)
			r.mustReach("udp", uext)
			if n := len(r.leases()); n != 1 {
				t.Fatalf("%d leases after delete, want 1", n)
			}

			// Expiry: min_lifetime is 2 s in the test config.
			ext2, _, err := r.natpmpc(0, "-a", "8081", "8080", "tcp", "2")
			if err != nil {
				t.Fatal(err)
			}
			r.mustReach("tcp", ext2)
			r.eventuallyUnreachable("tcp", ext2, 5*time.Second)
			// dpfd removes the pinhole, then the table entry (with
			// iptables, once the iptables-restore that removed the rule
			// has exited): a CI run listed the lease in between, so the
			// listing is given a little time too.
			for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(50 * time.Millisecond) {
				ls := r.leases()
				i := slices.IndexFunc(ls, func(l control.Lease) bool { return l.ExternalPort == ext2 && l.Proto == "tcp" })
				if i < 0 {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("expired lease still listed 2 s after its pinhole closed: %+v", ls[i])
				}
			}
		})
	}
}

// TestPolicyQuotaAndSpoofing: the default policy refuses port 80, the
// per-host quota is enforced, a spoofed PCP client address gets
// ADDRESS_MISMATCH, and requests from the WAN side change nothing.
func TestPolicyQuotaAndSpoofing(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 1)
			r.start()

			if _, out, err := r.natpmpc(0, "-a", "80", "80", "tcp", "3600"); err == nil {
				t.Fatalf("port 80 was mapped:\n%s", out)
			}
			// The same with a raw request, to check the result code.
			req := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 80, SuggestedExternalPort: 80, Lifetime: 3600}.AppendTo(nil)
			reply, err := r.ask(req, 3*time.Second)
			if err != nil || reply == nil {
				t.Fatalf("no reply to a port 80 request: %v", err)
			}
			if resp, err := natpmp.ParseResponse(reply); err != nil || resp.Result != natpmp.ResultNotAuthorized {
				t.Fatalf("port 80: %+v %v", resp, err)
			}

			// Quota: max_per_host is 6.
			for i := range 6 {
				if _, _, err := r.natpmpc(0, "-a", "0", itoa(20000+i), "udp", "600"); err != nil {
					t.Fatal(err)
				}
			}
			req = natpmp.Request{Op: natpmp.OpMapUDP, InternalPort: 21000, Lifetime: 600}.AppendTo(nil)
			reply, _ = r.ask(req, 3*time.Second)
			if resp, err := natpmp.ParseResponse(reply); err != nil || resp.Result != natpmp.ResultOutOfResources {
				t.Fatalf("seventh lease: %+v %v", resp, err)
			}
			if n := len(r.leases()); n != 6 {
				t.Fatalf("%d leases, want 6", n)
			}

			// PCP with a client address that is not the source.
			m := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: 600,
				ClientAddr: netip.MustParseAddr("198.51.100.99"),
				Map:        pcp.MapData{Protocol: 6, InternalPort: 8080, ExternalPort: 8080}}
			m.Map.Nonce[0] = 1
			reply, err = r.ask(m.AppendTo(nil), 3*time.Second)
			if err != nil || reply == nil {
				t.Fatalf("no reply to spoofed PCP: %v", err)
			}
			if resp, err := pcp.ParseResponse(reply); err != nil || resp.Result != pcp.ResultAddressMismatch {
				t.Fatalf("spoofed client address: %+v %v", resp, err)
			}

			// From the WAN side: to the WAN address, and to the LAN
			// address routed through the WAN interface. No answer, no
			// lease.
			if err := r.lab.Exec(r.lab.Inet, "ip", "route", "add", "198.51.100.0/24", "via", lab.RouterWAN.String()); err != nil {
				t.Fatal(err)
			}
			wanReq := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600}.AppendTo(nil)
			for _, dst := range []netip.Addr{lab.RouterWAN, lab.RouterLAN} {
				reply, err := udpExchange(r.lab.Inet, lab.Inet, netip.AddrPortFrom(dst, 5351), wanReq, 2*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				if reply != nil {
					t.Fatalf("request from the WAN side to %s was answered: %x", dst, reply)
				}
			}
			if n := len(r.leases()); n != 6 {
				t.Fatalf("%d leases after WAN-side requests, want 6", n)
			}
		})
	}
}

// TestPCPFilter: a PCP mapping with a FILTER option admits only the listed
// remote peer.
func TestPCPFilter(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 1)
			r.start()
			r.echoServers(0, 8443)
			m := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: 600, ClientAddr: lab.LANHost(0),
				Map: pcp.MapData{Protocol: 6, InternalPort: 8443, ExternalPort: 8443},
				Options: []pcp.Option{
					pcp.FilterOption(pcp.Filter{Prefix: netip.PrefixFrom(lab.Inet, 32)}),
					pcp.DescriptionOption("filtered web"),
				}}
			copy(m.Map.Nonce[:], "systest-nonc")
			reply, err := r.ask(m.AppendTo(nil), 3*time.Second)
			if err != nil || reply == nil {
				t.Fatalf("no reply: %v", err)
			}
			resp, err := pcp.ParseResponse(reply)
			if err != nil || resp.Result != pcp.ResultSuccess || resp.Map.ExternalPort != 8443 || resp.Map.ExternalAddr != lab.RouterWAN {
				t.Fatalf("%+v %v", resp, err)
			}
			if err := r.reach("tcp", lab.Inet, 8443); err != nil {
				t.Fatalf("allowed peer refused: %v", err)
			}
			if err := r.reach("tcp", lab.Inet2, 8443); err == nil {
				t.Fatal("peer outside the filter got through")
			}
			ls := r.leases()
			if len(ls) != 1 || ls[0].Description != "filtered web" || len(ls[0].Filters) != 1 {
				t.Fatalf("leases: %+v", ls)
			}
		})
	}
}

// TestKillAndRestart: after kill -9 and a restart, every acknowledged
// mapping forwards again, even when the firewall lost its rules meanwhile.
func TestKillAndRestart(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 2)
			r.start()
			r.echoServers(0, 8080)
			r.echoServers(1, 8080)
			a, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			b, _, err := r.natpmpc(1, "-a", "8080", "8080", "tcp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			if a == b {
				t.Fatalf("two hosts got the same external port %d", a)
			}
			u, _, err := r.natpmpc(1, "-a", "9053", "8080", "udp", "3600")
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(1100 * time.Millisecond) // let the epoch reach at least 1
			before := r.leases()
			epochBefore := r.epoch(t)
			if epochBefore == 0 {
				t.Fatal("epoch still 0 after a second")
			}

			r.kill(syscall.SIGKILL)
			// Rules outlive the process...
			r.mustReach("tcp", a)
			// ...and are restored from the store if someone removes
			// them while dpfd is down.
			if out, err := r.dpfd("cleanup"); err != nil {
				t.Fatalf("cleanup: %v\n%s", err, out)
			}
			r.mustNotReach("tcp", a)

			r.start()
			r.mustReach("tcp", a)
			r.mustReach("tcp", b)
			r.mustReach("udp", u)
			// State was restored, so the epoch continues (RFC 6887
			// section 8.5) instead of starting again at 0.
			if e := r.epoch(t); e < epochBefore {
				t.Fatalf("epoch went back from %d to %d across a restart with restored state", epochBefore, e)
			}
			after := r.leases()
			if len(after) != len(before) {
				t.Fatalf("%d leases before the crash, %d after", len(before), len(after))
			}
			for i := range before {
				if before[i].ExternalPort != after[i].ExternalPort || before[i].InternalAddr != after[i].InternalAddr ||
					!before[i].Created.Equal(after[i].Created) {
					t.Fatalf("lease changed across restart:\n%+v\n%+v", before[i], after[i])
				}
			}
			// A renewal after the restart keeps the port.
			again, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
			if err != nil || again != a {
				t.Fatalf("renewal after restart got %d (%v), want %d", again, err, a)
			}
			// The dpfd CLI sees the same.
			out, err := r.dpfd("list")
			if err != nil || !strings.Contains(out, lab.LANHost(1).String()+":8080") {
				t.Fatalf("dpfd list: %v\n%s", err, out)
			}
			// An administrator's delete closes the pinhole.
			if out, err := r.dpfd("delete", "tcp", itoa(int(b))); err != nil {
				t.Fatalf("dpfd delete: %v\n%s", err, out)
			}
			r.mustNotReach("tcp", b)
		})
	}
}

// ask sends a PCP or NAT-PMP request from LAN host 0 to the router and
// returns the reply, or nil after wait.
func (r *router) ask(req []byte, wait time.Duration) ([]byte, error) {
	return udpExchange(r.lab.LAN[0], lab.LANHost(0), netip.AddrPortFrom(lab.RouterLAN, 5351), req, wait)
}

// epoch asks the router for its address with NAT-PMP and returns the epoch.
func (r *router) epoch(t *testing.T) uint32 {
	t.Helper()
	reply, err := r.ask([]byte{0, 0}, 3*time.Second)
	if err != nil || reply == nil {
		t.Fatalf("no reply to a public address request: %v", err)
	}
	resp, err := natpmp.ParseResponse(reply)
	if err != nil || resp.Result != natpmp.ResultSuccess || resp.ExternalAddr != lab.RouterWAN {
		t.Fatalf("public address: %+v %v", resp, err)
	}
	return resp.Epoch
}

func itoa(n int) string { return strconv.Itoa(n) }
