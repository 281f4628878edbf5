package systest

// System tests of the NAT-type probe (client/nattype): coturn runs as an
// RFC 5780 STUN server on the internet host, the router gets one NAT
// configuration after another (nftables), and the probe runs from the LAN
// host. coturn's own turnutils_natdiscovery checks the classes the probe
// reports.

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pion/stun/v3"

	"github.com/dpf-router/dpf/client/nattype"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/internal/testenv"
)

// ntSTUNServer is coturn's primary address; its alternate is Inet2 on
// port 3479.
var (
	ntSTUNServer = netip.AddrPortFrom(lab.Inet, 3478)
	ntSTUNOther  = netip.AddrPortFrom(lab.Inet2, 3479)
)

// Time limits of the NAT-type system tests.
const (
	ntSTUNStartup = 10 * time.Second // until coturn answers
	ntProbeLimit  = 30 * time.Second // one Probe, generous over its own 10 s budget
	ntToolLimit   = 40 * time.Second // natdiscovery: no retransmission, 3 s per unanswered test
)

// ntProbeConfig makes the probe quicker than its defaults (a filtered
// test costs MaxWait) while still retransmitting.
func ntProbeConfig(log *slog.Logger) nattype.Config {
	return nattype.Config{
		Server:  ntSTUNServer.String(),
		RTO:     200 * time.Millisecond,
		MaxWait: 1500 * time.Millisecond,
		Timeout: 15 * time.Second,
		Logger:  log,
	}
}

func ntNeedTools(t *testing.T) {
	t.Helper()
	testenv.RequireRoot(t)
	for _, tool := range []string{"ip", "nft", "turnserver", "turnutils_natdiscovery"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs nftables and coturn): %v", tool, err)
		}
	}
}

// ntPrefix returns a namespace name prefix unique to this run.
func ntPrefix() string {
	return "nt" + strings.ToLower(rand.Text()[:6])
}

// ntNewLab builds the standard lab (inet, router, one LAN host), deleted
// when t ends.
func ntNewLab(t *testing.T) *lab.Lab {
	t.Helper()
	l, err := lab.New(ntPrefix(), 1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if out, err := l.Output(5*time.Second, l.Router, "nft", "list", "ruleset"); err == nil {
				t.Logf("router ruleset:\n%s", out)
			}
		}
		if err := l.Close(); err != nil {
			t.Errorf("closing lab: %v", err)
		}
	})
	return l
}

// ntNFT loads an nftables ruleset into namespace ns.
func ntNFT(t *testing.T, l *lab.Lab, ns, ruleset string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "rules.nft")
	if err := os.WriteFile(f, []byte(ruleset), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.Exec(ns, "nft", "-f", f); err != nil {
		t.Fatal(err)
	}
}

// ntStartSTUN runs coturn in namespace ns (which must hold lab.Inet and
// lab.Inet2) as a STUN-only RFC 5780 server and waits until it answers
// with OTHER-ADDRESS. It is stopped, by PID, when t ends. l tracks the
// process (any *lab.Lab will do, even a zero one).
func ntStartSTUN(t *testing.T, l *lab.Lab, ns string) {
	t.Helper()
	dir := t.TempDir()
	logBuf := &syncBuffer{}
	// RFC 5780 support is on by default with two listening addresses;
	// --alt-listening-port makes the alternate port explicit (default:
	// port+1). --pidfile and --db keep coturn out of /var.
	cmd := exec.Command("turnserver", "-n", "--stun-only", "--no-auth", "--no-cli",
		"--no-tls", "--no-dtls", "--no-tcp",
		"-L", lab.Inet.String(), "-L", lab.Inet2.String(),
		"--listening-port", "3478", "--alt-listening-port", "3479",
		"--log-file=stdout", "--simple-log",
		"--pidfile", filepath.Join(dir, "turnserver.pid"),
		"--db", filepath.Join(dir, "turndb"))
	cmd.Stdout, cmd.Stderr = logBuf, logBuf
	if err := l.Start(ns, cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lab.Stop(cmd, syscall.SIGTERM)
		if t.Failed() {
			t.Logf("turnserver log:\n%s", logBuf.String())
		}
	})
	id := stun.NewTransactionID()
	req := stun.MustBuild(stun.NewTransactionIDSetter(id), stun.BindingRequest).Raw
	deadline := time.Now().Add(ntSTUNStartup)
	for {
		reply, err := udpExchange(ns, lab.Inet, ntSTUNServer, req, 200*time.Millisecond)
		if err == nil && reply != nil {
			var m stun.Message
			var other stun.OtherAddress
			if err := stun.Decode(reply, &m); err != nil || m.TransactionID != id {
				t.Fatalf("coturn answered %x: %v", reply, err)
			}
			if err := other.GetFrom(&m); err != nil {
				t.Fatalf("coturn answers without OTHER-ADDRESS (%v): RFC 5780 is off", err)
			}
			if got, _ := netip.AddrFromSlice(other.IP); netip.AddrPortFrom(got.Unmap(), uint16(other.Port)) != ntSTUNOther {
				t.Fatalf("coturn's OTHER-ADDRESS is %v, want %v", other, ntSTUNOther)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("coturn did not answer within %v: %v\n%s", ntSTUNStartup, err, logBuf.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ntProbe runs nattype.Probe with its sockets in namespace ns.
func ntProbe(t *testing.T, ns string) *nattype.Result {
	t.Helper()
	logBuf := &syncBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithTimeout(t.Context(), ntProbeLimit)
	defer cancel()
	var r *nattype.Result
	start := time.Now()
	err := lab.In(ns, func() error {
		var err error
		r, err = nattype.Probe(ctx, ntProbeConfig(log))
		return err
	})
	if err != nil {
		t.Fatalf("probe: %v\n%s", err, logBuf.String())
	}
	t.Logf("probe (%v): %v", time.Since(start).Round(time.Millisecond), r)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("probe log:\n%s", logBuf.String())
		}
	})
	return r
}

var ntDiscoveryRE = regexp.MustCompile(`NAT with (Endpoint Independent|Address Dependent|Address and Port Dependent) (Mapping|Filtering)!`)

// ntNATDiscovery runs coturn's turnutils_natdiscovery -m -f in namespace
// ns and returns the mapping and filtering classes it prints.
func ntNATDiscovery(t *testing.T, l *lab.Lab, ns string) (mapping, filtering nattype.Behavior) {
	t.Helper()
	out, err := l.Output(ntToolLimit, ns, "turnutils_natdiscovery", "-m", "-f", lab.Inet.String())
	if err != nil {
		t.Fatalf("turnutils_natdiscovery: %v\n%s", err, out)
	}
	classes := map[string]nattype.Behavior{
		"Endpoint Independent":       nattype.EndpointIndependent,
		"Address Dependent":          nattype.AddressDependent,
		"Address and Port Dependent": nattype.AddressAndPortDependent,
	}
	for _, m := range ntDiscoveryRE.FindAllStringSubmatch(out, -1) {
		if m[2] == "Mapping" {
			mapping = classes[m[1]]
		} else {
			filtering = classes[m[1]]
		}
	}
	if mapping == nattype.Unknown || filtering == nattype.Unknown {
		t.Fatalf("no verdict in turnutils_natdiscovery's output:\n%s", out)
	}
	return mapping, filtering
}

// Router rulesets. Every one keeps its rules in table ip ntnat.
const (
	// ntStatefulForward lets LAN traffic out and only replies back in.
	ntStatefulForward = `
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		iifname "br-lan" oifname "wan0" accept
	}`
	ntMasquerade = `table ip ntnat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan0" masquerade
	}` + ntStatefulForward + `
}
`
	ntMasqueradeRandom = `table ip ntnat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan0" masquerade random
	}` + ntStatefulForward + `
}
`
	// ntFullCone makes the LAN host a "DMZ host": every UDP port of the
	// WAN address leads to it, whoever sends, and masquerading keeps
	// its source ports. (One forwarded port is not enough: the probe
	// runs its filtering tests on a fresh ephemeral port.)
	ntFullCone = `table ip ntnat {
	chain prerouting {
		type nat hook prerouting priority dstnat;
		iifname "wan0" ip daddr 203.0.113.1 meta l4proto udp dnat to 198.51.100.2
	}
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan0" masquerade
	}
	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state established,related accept
		ct status dnat accept
		iifname "br-lan" oifname "wan0" accept
	}
}
`
	// ntFirewallOnly routes without NAT but drops new inbound flows.
	ntFirewallOnly = `table ip ntnat {` + ntStatefulForward + `
}
`
)

// TestNATTypeThroughRouter probes from the LAN host through one router
// configuration at a time, each in a fresh lab (so no connection-tracking
// state carries over), and checks the RFC 5780 classes, coturn's
// natdiscovery's opinion and the verdict.
func TestNATTypeThroughRouter(t *testing.T) {
	ntNeedTools(t)
	gwPCP := nattype.GatewayInfo{Protocol: "PCP", ExternalAddr: lab.RouterWAN}
	tests := []struct {
		name          string
		ruleset       string // "" for none
		noNAT         bool   // the internet host routes to the LAN
		wantMapping   nattype.Behavior
		wantFiltering nattype.Behavior
		crossCheck    bool // compare with turnutils_natdiscovery
		wantCode      string
		gw            nattype.GatewayInfo
	}{
		// Linux keeps the source port when it is free, so plain
		// masquerading maps endpoint-independently; conntrack lets
		// in only the exact peer's replies.
		{name: "masquerade", ruleset: ntMasquerade,
			wantMapping: nattype.EndpointIndependent, wantFiltering: nattype.AddressAndPortDependent,
			crossCheck: true, wantCode: nattype.CodeNoInbound},
		// The same router with DPF on it: its PCP external address is
		// what the internet sees.
		{name: "masquerade with PCP gateway", ruleset: ntMasquerade,
			wantMapping: nattype.EndpointIndependent, wantFiltering: nattype.AddressAndPortDependent,
			wantCode: nattype.CodeInboundViaDPF, gw: gwPCP},
		// "random" picks a random port for every new flow: every
		// destination address and port gets its own mapping.
		{name: "masquerade random", ruleset: ntMasqueradeRandom,
			wantMapping: nattype.AddressAndPortDependent, wantFiltering: nattype.AddressAndPortDependent,
			crossCheck: true, wantCode: nattype.CodeNoInbound},
		{name: "full cone", ruleset: ntFullCone,
			wantMapping: nattype.EndpointIndependent, wantFiltering: nattype.EndpointIndependent,
			crossCheck: true, wantCode: nattype.CodeHolePunching},
		{name: "no NAT open", noNAT: true,
			wantMapping: nattype.EndpointIndependent, wantFiltering: nattype.EndpointIndependent,
			wantCode: nattype.CodeOpen},
		{name: "no NAT firewalled", ruleset: ntFirewallOnly, noNAT: true,
			wantMapping: nattype.EndpointIndependent, wantFiltering: nattype.AddressAndPortDependent,
			wantCode: nattype.CodeFirewalled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			l := ntNewLab(t)
			if tt.noNAT {
				if err := l.Exec(l.Inet, "ip", "route", "add", lab.LANPrefix.String(), "via", lab.RouterWAN.String()); err != nil {
					t.Fatal(err)
				}
			}
			if tt.ruleset != "" {
				ntNFT(t, l, l.Router, tt.ruleset)
			}
			ntStartSTUN(t, l, l.Inet)

			r := ntProbe(t, l.LAN[0])
			if r.Local.Addr() != lab.LANHost(0) {
				t.Errorf("Local = %v, want %v", r.Local, lab.LANHost(0))
			}
			wantMappedIP := lab.RouterWAN
			if tt.noNAT {
				wantMappedIP = lab.LANHost(0)
			}
			if r.Mapped.Addr() != wantMappedIP || r.NoNAT != tt.noNAT {
				t.Errorf("Mapped %v NoNAT %v, want address %v NoNAT %v", r.Mapped, r.NoNAT, wantMappedIP, tt.noNAT)
			}
			if r.Server != ntSTUNServer || r.OtherAddr != ntSTUNOther {
				t.Errorf("Server %v OtherAddr %v", r.Server, r.OtherAddr)
			}
			if r.Mapping != tt.wantMapping || r.Filtering != tt.wantFiltering {
				t.Errorf("mapping %v filtering %v, want %v %v", r.Mapping, r.Filtering, tt.wantMapping, tt.wantFiltering)
			}
			v := nattype.Classify(r, tt.gw)
			t.Logf("verdict %s: %s", v.Code, v.Text)
			if v.Code != tt.wantCode {
				t.Errorf("verdict %q (%s), want %q", v.Code, v.Text, tt.wantCode)
			}

			if tt.crossCheck {
				m, f := ntNATDiscovery(t, l, l.LAN[0])
				t.Logf("turnutils_natdiscovery: mapping %v, filtering %v", m, f)
				if m != r.Mapping || f != r.Filtering {
					t.Errorf("turnutils_natdiscovery says mapping %v filtering %v; the probe said %v %v", m, f, r.Mapping, r.Filtering)
				}
			}
		})
	}
}

// ntNamespaces creates namespaces prefix-name for each name, deleted when
// t ends.
func ntNamespaces(t *testing.T, prefix string, names ...string) map[string]string {
	t.Helper()
	ns := map[string]string{}
	for _, n := range names {
		full := prefix + "-" + n
		if out, err := exec.Command("ip", "netns", "add", full).CombinedOutput(); err != nil {
			t.Fatalf("ip netns add %s: %v: %s", full, err, out)
		}
		t.Cleanup(func() {
			if out, err := exec.Command("ip", "netns", "del", full).CombinedOutput(); err != nil {
				t.Errorf("ip netns del %s: %v: %s", full, err, out)
			}
		})
		ns[n] = full
	}
	return ns
}

// TestNATTypeCGNAT: the LAN host sits behind a home router whose WAN side
// is in the carrier's shared address space (RFC 6598), behind a carrier
// NAT:
//
//	lan 198.51.100.2 -> home (198.51.100.1 | 100.64.0.2, masquerade)
//	  -> cgn (100.64.0.1 | 203.0.113.1, masquerade) -> inet 203.0.113.2/.3
//
// The probe sees the carrier's address; with the home router's NAT-PMP
// answer (external address 100.64.0.2) the verdict is carrier-grade NAT.
func TestNATTypeCGNAT(t *testing.T) {
	ntNeedTools(t)
	ns := ntNamespaces(t, ntPrefix(), "inet", "cgn", "home", "lan")
	procs := &lab.Lab{} // tracks coturn only; it owns no namespace
	t.Cleanup(func() { procs.Close() })
	steps := [][]string{
		{"-n", ns["cgn"], "link", "add", "wan0", "type", "veth", "peer", "name", "i0", "netns", ns["inet"]},
		{"-n", ns["cgn"], "link", "add", "sub0", "type", "veth", "peer", "name", "wan0", "netns", ns["home"]},
		{"-n", ns["home"], "link", "add", "lan0", "type", "veth", "peer", "name", "eth0", "netns", ns["lan"]},
		{"-n", ns["inet"], "addr", "add", "203.0.113.2/24", "dev", "i0"},
		{"-n", ns["inet"], "addr", "add", "203.0.113.3/24", "dev", "i0"},
		{"-n", ns["cgn"], "addr", "add", "203.0.113.1/24", "dev", "wan0"},
		{"-n", ns["cgn"], "addr", "add", "100.64.0.1/10", "dev", "sub0"},
		{"-n", ns["home"], "addr", "add", "100.64.0.2/10", "dev", "wan0"},
		{"-n", ns["home"], "addr", "add", "198.51.100.1/24", "dev", "lan0"},
		{"-n", ns["lan"], "addr", "add", "198.51.100.2/24", "dev", "eth0"},
	}
	for _, link := range []struct{ ns, dev string }{
		{"inet", "lo"}, {"inet", "i0"}, {"cgn", "lo"}, {"cgn", "wan0"}, {"cgn", "sub0"},
		{"home", "lo"}, {"home", "wan0"}, {"home", "lan0"}, {"lan", "lo"}, {"lan", "eth0"},
	} {
		steps = append(steps, []string{"-n", ns[link.ns], "link", "set", link.dev, "up"})
	}
	steps = append(steps,
		[]string{"-n", ns["home"], "route", "add", "default", "via", "100.64.0.1"},
		[]string{"-n", ns["lan"], "route", "add", "default", "via", "198.51.100.1"},
	)
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(s, " "), err, out)
		}
	}
	for _, r := range []string{"cgn", "home"} {
		if err := procs.Exec(ns[r], "sysctl", "-qw", "net.ipv4.ip_forward=1"); err != nil {
			t.Fatal(err)
		}
		ntNFT(t, procs, ns[r], `table ip ntnat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan0" masquerade
	}
}
`)
	}
	ntStartSTUN(t, procs, ns["inet"])

	r := ntProbe(t, ns["lan"])
	if r.NoNAT || r.Mapped.Addr() != lab.RouterWAN || r.Local.Addr() != lab.LANHost(0) {
		t.Errorf("probe: %v; want mapped address %v from local %v", r, lab.RouterWAN, lab.LANHost(0))
	}
	// Two port-preserving masquerades map endpoint-independently.
	if r.Mapping != nattype.EndpointIndependent {
		t.Errorf("mapping %v, want %v", r.Mapping, nattype.EndpointIndependent)
	}
	gw := nattype.GatewayInfo{Protocol: "NAT-PMP", ExternalAddr: netip.MustParseAddr("100.64.0.2")}
	v := nattype.Classify(r, gw)
	t.Logf("verdict %s: %s", v.Code, v.Text)
	if v.Code != nattype.CodeCGNAT || !v.CGNAT || v.InboundViaDPF {
		t.Errorf("verdict %+v, want carrier-grade NAT", v)
	}
	if !strings.Contains(v.Text, "public reachability impossible over IPv4") {
		t.Errorf("verdict text %q", v.Text)
	}

	// The same, end to end: dpfd on the home router answers PCP with its
	// WAN address 100.64.0.2, and `dpf nat-type` on the LAN host compares
	// it with what STUN saw.
	startDPFDIn(t, procs, ns["home"], "lan0", "wan0")
	out, err := procs.Output(30*time.Second, ns["lan"], dpfBin, "nat-type", "--json", "--stun", lab.Inet.String()+":3478")
	if err != nil {
		t.Fatalf("dpf nat-type: %v\n%s", err, out)
	}
	var nt natTypeJSON
	if err := json.Unmarshal([]byte(out), &nt); err != nil {
		t.Fatalf("dpf nat-type: %v\n%s", err, out)
	}
	if nt.Verdict != "cgnat" || !nt.CGNAT || nt.InboundViaDPF || nt.GatewayProtocol != "PCP" || nt.GatewayExternal != "100.64.0.2" {
		t.Fatalf("dpf nat-type behind carrier-grade NAT: %+v", nt)
	}
	if !strings.Contains(nt.Text, "public reachability impossible over IPv4") {
		t.Fatalf("verdict text %q", nt.Text)
	}
}
