//go:build linux

package firewall

// Real-kernel tests: each runs a backend in its own throwaway network
// namespace (Config.NetNS). They need root; see testenv.RequireRoot.

import (
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// kernelCase adapts the lifecycle test to a backend.
type kernelCase struct {
	kind string
	// setup, if not nil, adds the system firewall's own rules first.
	setup func(t *testing.T, ns string)
	// dump returns our rules and elements as text (for duplicate checks
	// only: the backends never read this text).
	dump func(t *testing.T, ns string) string
	// golden is dump's expected output with samplePinholes installed.
	golden string
	// wreck deletes our state the way an unaware admin or a firewall
	// reload would.
	wreck func(t *testing.T, ns string)
	// unrelated adds rules that are not ours; checkUnrelated verifies
	// they survived; checkGone verifies nothing of ours is left.
	unrelated, checkUnrelated, checkGone func(t *testing.T, ns string)
}

func newKernelBackend(t testing.TB, kind, ns, wan string) Backend {
	t.Helper()
	b, err := New(kind, Config{WANInterface: wan, NetNS: ns, Logger: testLogger(t)})
	if err != nil {
		t.Fatalf("New(%q): %v", kind, err)
	}
	if kind != KindAuto && b.Name() != kind {
		t.Fatalf("Name() = %q, want %q", b.Name(), kind)
	}
	t.Cleanup(func() { b.Close() })
	return b
}

func wantInstalled(t *testing.T, b Backend, ps []Pinhole) {
	t.Helper()
	got, err := b.Installed()
	if err != nil {
		t.Fatalf("Installed: %v", err)
	}
	m, err := validateAll(ps)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedPinholes(m)
	if len(got) == 0 && len(want) == 0 {
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Installed:\n got %v\nwant %v", got, want)
	}
}

func must(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
}

func testLifecycle(t *testing.T, kc kernelCase) {
	ns := newNetNS(t)
	if kc.setup != nil {
		kc.setup(t, ns)
	}
	b := newKernelBackend(t, kc.kind, ns, "wan0")
	must(t, "Init", b.Init())
	must(t, "Init again", b.Init())
	wantInstalled(t, b, nil)

	ps := samplePinholes()
	for _, p := range ps {
		must(t, "Add", b.Add(p))
	}
	wantInstalled(t, b, ps)
	d1 := kc.dump(t, ns)
	if d1 != kc.golden {
		t.Errorf("rules:\n%s\nwant:\n%s", d1, kc.golden)
	}

	// Adding again and re-initialising change nothing.
	for _, p := range ps {
		must(t, "Add again", b.Add(p))
	}
	must(t, "Init again", b.Init())
	if d := kc.dump(t, ns); d != d1 {
		t.Errorf("after adding again:\n%s\nbefore:\n%s", d, d1)
	}

	// Replace one pinhole's contents.
	p0 := ps[0]
	p0.InternalPort = 8000
	must(t, "Add replacement", b.Add(p0))
	wantInstalled(t, b, append([]Pinhole{p0}, ps[1:]...))
	must(t, "Add original", b.Add(ps[0]))
	if d := kc.dump(t, ns); d != d1 {
		t.Errorf("after replacing back:\n%s\nbefore:\n%s", d, d1)
	}

	// Remove twice, and something never there.
	for range 2 {
		must(t, "Remove", b.Remove(Key{TCP, 2222}))
	}
	must(t, "Remove absent", b.Remove(Key{UDP, 1}))
	wantInstalled(t, b, ps[:2])

	// Sync after the state was wrecked restores it exactly.
	kc.wreck(t, ns)
	must(t, "Sync", b.Sync(ps))
	wantInstalled(t, b, ps)
	if d := kc.dump(t, ns); d != d1 {
		t.Errorf("after Sync:\n%s\nwant:\n%s", d, d1)
	}
	must(t, "Sync again", b.Sync(ps))
	if d := kc.dump(t, ns); d != d1 {
		t.Errorf("after Sync again:\n%s\nwant:\n%s", d, d1)
	}
	// Sync to fewer removes the rest.
	must(t, "Sync subset", b.Sync(ps[1:2]))
	wantInstalled(t, b, ps[1:2])

	// Add after wrecking re-creates what it needs.
	kc.wreck(t, ns)
	must(t, "Add after wreck", b.Add(ps[2]))
	if got, _ := b.Installed(); len(got) == 0 || got[len(got)-1].ExternalPort != 2222 {
		t.Errorf("Installed after Add on wrecked state: %v", got)
	}

	// A new WAN interface name: Init rewrites the rules.
	must(t, "Sync", b.Sync(ps))
	b2 := newKernelBackend(t, kc.kind, ns, "wan1")
	must(t, "Init wan1", b2.Init())
	if d := kc.dump(t, ns); strings.Contains(d, "wan0") || d != strings.ReplaceAll(d1, "wan0", "wan1") {
		t.Errorf("after WAN change:\n%s", d)
	}
	wantInstalled(t, b2, ps)

	// Cleanup removes ours and only ours; twice is fine.
	kc.unrelated(t, ns)
	for range 2 {
		must(t, "Cleanup", b.Cleanup())
	}
	kc.checkUnrelated(t, ns)
	kc.checkGone(t, ns)
	wantInstalled(t, b, nil)
}

// nftGolden is `nft list table ip dpf` with samplePinholes installed.
const nftGolden = `table ip dpf {
	map dnat_tcp {
		type inet_service : ipv4_addr . inet_service
		elements = { 2222 : 198.51.100.2 . 22, 8080 : 198.51.100.2 . 80 }
	}

	map dnat_udp {
		type inet_service : ipv4_addr . inet_service
		elements = { 5353 : 198.51.100.3 . 53 }
	}

	set filtered_tcp {
		type inet_service
		elements = { 2222 }
	}

	set filtered_udp {
		type inet_service
	}

	set allow_tcp {
		type inet_service . ipv4_addr . inet_service
		flags interval
		elements = { 2222 . 192.0.2.0/24 . 4000,
			     2222 . 203.0.113.2 . 0-65535 }
	}

	set allow_udp {
		type inet_service . ipv4_addr . inet_service
		flags interval
	}

	set fwd_pinholes {
		type ipv4_addr . inet_proto . inet_service
		elements = { 198.51.100.2 . tcp . 22,
			     198.51.100.2 . tcp . 80,
			     198.51.100.3 . udp . 53 }
	}

	chain filter_pre {
		type filter hook prerouting priority mangle; policy accept;
		iifname "wan0" ct direction original tcp dport @filtered_tcp tcp dport . ip saddr . tcp sport != @allow_tcp drop
		iifname "wan0" ct direction original udp dport @filtered_udp udp dport . ip saddr . udp sport != @allow_udp drop
	}

	chain dnat_pre {
		type nat hook prerouting priority dstnat; policy accept;
		iifname "wan0" dnat ip to tcp dport map @dnat_tcp
		iifname "wan0" dnat ip to udp dport map @dnat_udp
	}

	chain filter_fwd {
		type filter hook forward priority filter - 1; policy accept;
		ct status dnat ip daddr . meta l4proto . th dport @fwd_pinholes accept
	}
}
`

func nftDump(t *testing.T, ns string) string {
	return nftSortElements(nsRun(t, ns, "nft", "list", "table", "ip", "dpf"))
}

// nftSortElements rewrites every "elements = { ... }" list on one line,
// sorted: the kernel's hash decides the order nft prints hash sets in.
func nftSortElements(s string) string {
	re := regexp.MustCompile(`elements = \{ ([^}]*) \}`)
	return re.ReplaceAllStringFunc(s, func(m string) string {
		parts := regexp.MustCompile(`,\s*`).Split(re.FindStringSubmatch(m)[1], -1)
		slices.Sort(parts)
		return "elements = { " + strings.Join(parts, ", ") + " }"
	})
}

func TestNFTablesKernel(t *testing.T) {
	testLifecycle(t, kernelCase{
		kind:   KindNFTables,
		dump:   nftDump,
		golden: nftSortElements(nftGolden),
		wreck: func(t *testing.T, ns string) {
			nsRun(t, ns, "nft", "flush", "ruleset")
		},
		unrelated: func(t *testing.T, ns string) {
			nsRun(t, ns, "nft", "add table ip other; add chain ip other input { type filter hook input priority 0; }; add rule ip other input tcp dport 22 accept")
			nsRun(t, ns, "nft", "add table inet dpf") // same name, other family: not ours
		},
		checkUnrelated: func(t *testing.T, ns string) {
			out := nsRun(t, ns, "nft", "list", "ruleset")
			if !strings.Contains(out, "table ip other") || !strings.Contains(out, "tcp dport 22 accept") ||
				!strings.Contains(out, "table inet dpf") {
				t.Errorf("unrelated rules gone:\n%s", out)
			}
		},
		checkGone: func(t *testing.T, ns string) {
			if out := nsRun(t, ns, "nft", "list", "tables"); strings.Contains(out, "table ip dpf") {
				t.Errorf("table ip dpf survived Cleanup:\n%s", out)
			}
		},
	})
}

// iptGolden is iptDump's output with samplePinholes installed.
const iptGolden = `*filter
:DPF-FORWARD
-A FORWARD -j DPF-FORWARD
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A DPF-FORWARD -s 192.0.2.0/24 -d 198.51.100.2/32 -p tcp -m tcp --sport 4000 --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment "dpf:tcp:2222" -j ACCEPT
-A DPF-FORWARD -s 203.0.113.2/32 -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment "dpf:tcp:2222" -j ACCEPT
-A DPF-FORWARD -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment "dpf:tcp:2222" -j DROP
-A DPF-FORWARD -d 198.51.100.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment "dpf:tcp:8080" -j ACCEPT
-A DPF-FORWARD -d 198.51.100.3/32 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT --ctorigdstport 5353 -m comment --comment "dpf:udp:5353" -j ACCEPT
*nat
:DPF-PREROUTING
-A PREROUTING -i wan0 -j DPF-PREROUTING
-A DPF-PREROUTING -p tcp -m tcp --dport 2222 -m comment --comment "dpf:tcp:2222" -j DNAT --to-destination 198.51.100.2:22
-A DPF-PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment "dpf:tcp:8080" -j DNAT --to-destination 198.51.100.2:80
-A DPF-PREROUTING -p udp -m udp --dport 5353 -m comment --comment "dpf:udp:5353" -j DNAT --to-destination 198.51.100.3:53
`

// iptDump is iptables-save without comments, counters, COMMIT and the
// built-in chains' policies. Rules of one pinhole keep their order (ACCEPTs
// before DROP matters), but pinholes are sorted by tag: Add appends, Sync
// writes in key order.
func iptDump(t *testing.T, ns string) string {
	var lines []string
	for _, l := range strings.Split(nsRun(t, ns, "iptables-save"), "\n") {
		switch {
		case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
		case strings.HasPrefix(l, "*"):
			lines = append(lines, l)
		case strings.HasPrefix(l, ":"):
			if name := strings.Fields(l)[0]; strings.HasPrefix(name, ":DPF") {
				lines = append(lines, name)
			}
		default:
			lines = append(lines, l)
		}
	}
	sortKey := func(l string) string {
		if strings.HasPrefix(l, "*") || strings.HasPrefix(l, ":") {
			return ""
		}
		_, tag, _ := strings.Cut(l, "--comment ")
		tag, _, _ = strings.Cut(tag, " ")
		return tag
	}
	// Sort stably within each table section, by pinhole tag ("" first,
	// i.e. headers and untagged rules keep their place at the top).
	var out []string
	for i := 0; i < len(lines); {
		j := i + 1
		for j < len(lines) && !strings.HasPrefix(lines[j], "*") {
			j++
		}
		sec := slices.Clone(lines[i:j])
		slices.SortStableFunc(sec, func(a, b string) int { return strings.Compare(sortKey(a), sortKey(b)) })
		out = append(out, sec...)
		i = j
	}
	return strings.Join(out, "\n") + "\n"
}

func TestIPTablesKernel(t *testing.T) {
	testLifecycle(t, kernelCase{
		kind: KindIPTables,
		setup: func(t *testing.T, ns string) {
			// The router's own rule; ours must come before it.
			nsRun(t, ns, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
		},
		dump:   iptDump,
		golden: iptGolden,
		wreck: func(t *testing.T, ns string) {
			nsRun(t, ns, "iptables", "-t", "nat", "-F")
		},
		unrelated: func(t *testing.T, ns string) {
			nsRun(t, ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "2022", "-j", "DNAT", "--to-destination", "198.51.100.9:22")
			nsRun(t, ns, "iptables", "-N", "OTHER")
			nsRun(t, ns, "iptables", "-A", "OTHER", "-s", "192.0.2.0/24", "-j", "DROP")
			nsRun(t, ns, "iptables", "-A", "INPUT", "-j", "OTHER")
		},
		checkUnrelated: func(t *testing.T, ns string) {
			out := iptDump(t, ns)
			for _, want := range []string{
				"-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
				"-A PREROUTING -p tcp -m tcp --dport 2022 -j DNAT --to-destination 198.51.100.9:22",
				"-A OTHER -s 192.0.2.0/24 -j DROP",
				"-A INPUT -j OTHER",
			} {
				if !strings.Contains(out, want+"\n") {
					t.Errorf("unrelated rule %q gone:\n%s", want, out)
				}
			}
		},
		checkGone: func(t *testing.T, ns string) {
			if out := iptDump(t, ns); strings.Contains(out, "DPF") || strings.Contains(out, "dpf") {
				t.Errorf("ours survived Cleanup:\n%s", out)
			}
		},
	})
}

func TestNewAutoKernel(t *testing.T) {
	ns := newNetNS(t)
	env, err := gatherDetectEnv(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("detected facts: %+v", env)
	if !env.NFTablesUsable {
		t.Errorf("nftables not usable in a fresh namespace: %+v", env)
	}
	want, err := Detect(env)
	if err != nil {
		t.Fatal(err)
	}
	b := newKernelBackend(t, KindAuto, ns, "wan0")
	if b.Name() != want {
		t.Errorf("New(auto) = %s, Detect = %s", b.Name(), want)
	}
}

// TestSyncManyKernel checks that a large Sync works in one go (one netlink
// batch, one iptables-restore) and that Installed reads it all back.
func TestSyncManyKernel(t *testing.T) {
	const n = 1000
	var ps []Pinhole
	for i := range n {
		p := Pinhole{Proto: TCP, ExternalPort: uint16(20000 + i), InternalAddr: mustAddr("198.51.100.2"), InternalPort: uint16(1000 + i)}
		if i%2 == 1 {
			p.Proto = UDP
		}
		if i%10 == 0 {
			p.Filters = []Filter{{Prefix: mustPrefix("203.0.113.0/24"), Port: uint16(i)}, {Prefix: mustPrefix("192.0.2.7/32")}}
		}
		ps = append(ps, p)
	}
	for _, kind := range []string{KindNFTables, KindIPTables} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetNS(t)
			b := newKernelBackend(t, kind, ns, "wan0")
			must(t, "Sync", b.Sync(ps))
			wantInstalled(t, b, ps)
			must(t, "Sync empty", b.Sync(nil))
			wantInstalled(t, b, nil)
			must(t, "Cleanup", b.Cleanup())
		})
	}
}
