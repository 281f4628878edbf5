//go:build linux

package firewall

import (
	"errors"
	"log/slog"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func TestDetect(t *testing.T) {
	tests := []struct {
		name    string
		env     DetectEnv
		want    string
		wantErr bool
	}{
		{"nothing", DetectEnv{}, "", true},
		{"nft only", DetectEnv{NFTablesUsable: true}, KindNFTables, false},
		{"nft and iptables-nft (fw4)", DetectEnv{NFTablesUsable: true, IPTablesPresent: true}, KindNFTables, false},
		{"iptables-nft with its tables", DetectEnv{NFTablesUsable: true, IPTablesPresent: true, LegacyRulesPresent: true}, KindNFTables, false},
		{"legacy binary, no legacy tables", DetectEnv{NFTablesUsable: true, IPTablesPresent: true, IPTablesLegacy: true}, KindNFTables, false},
		{"fw3: legacy binary and legacy tables", DetectEnv{NFTablesUsable: true, IPTablesPresent: true, IPTablesLegacy: true, LegacyRulesPresent: true}, KindIPTables, false},
		{"no nft netlink, legacy iptables", DetectEnv{IPTablesPresent: true, IPTablesLegacy: true}, KindIPTables, false},
		{"no nft netlink, iptables-nft", DetectEnv{IPTablesPresent: true}, KindIPTables, false},
		{"legacy tables but no binary", DetectEnv{NFTablesUsable: true, LegacyRulesPresent: true}, KindNFTables, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Detect(tt.env)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("Detect(%+v) = %q, %v; want %q, error %v", tt.env, got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUnsupported) {
				t.Errorf("error %v is not ErrUnsupported", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	for _, tc := range []struct {
		kind string
		cfg  Config
	}{
		{"nftables", Config{}},                                   // no WAN
		{"bogus", Config{WANInterface: "wan"}},                   // unknown kind
		{"nftables", Config{WANInterface: "a23456789012345678"}}, // name too long
		{"iptables", Config{WANInterface: "wan", NetNS: "../x"}},
	} {
		b, err := New(tc.kind, tc.cfg)
		if err == nil || b != nil {
			t.Errorf("New(%q, %+v) = %v, %v; want nil interface and an error", tc.kind, tc.cfg, b, err)
		}
	}
}

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }
func mustAddr(s string) netip.Addr     { return netip.MustParseAddr(s) }

func TestNormalizeFilters(t *testing.T) {
	got, err := normalizeFilters([]Filter{
		{Prefix: mustPrefix("203.0.113.7/24")}, // masked to .0/24, admits .2:5000 too
		{Prefix: mustPrefix("203.0.113.2/32"), Port: 5000},
		{Prefix: mustPrefix("192.0.2.1/32"), Port: 7},
		{Prefix: mustPrefix("192.0.2.1/32"), Port: 7}, // duplicate
		{Prefix: mustPrefix("192.0.2.0/25"), Port: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []Filter{
		{Prefix: mustPrefix("192.0.2.0/25"), Port: 8},
		{Prefix: mustPrefix("192.0.2.1/32"), Port: 7},
		{Prefix: mustPrefix("203.0.113.0/24")},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("normalizeFilters = %v, want %v", got, want)
	}
	if _, err := normalizeFilters([]Filter{{Prefix: mustPrefix("2001:db8::/32")}}); err == nil {
		t.Error("IPv6 filter accepted")
	}
	if _, err := validate(Pinhole{Proto: TCP, ExternalPort: 1, InternalAddr: mustAddr("2001:db8::1"), InternalPort: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("IPv6 internal address: %v", err)
	}
	if _, err := validate(Pinhole{Proto: 1, ExternalPort: 1, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 1}); !errors.Is(err, ErrInvalid) {
		t.Errorf("ICMP pinhole: %v", err)
	}
}

// samplePinholes are the pinholes most tests install.
func samplePinholes() []Pinhole {
	return []Pinhole{
		{Proto: TCP, ExternalPort: 8080, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 80},
		{Proto: UDP, ExternalPort: 5353, InternalAddr: mustAddr("198.51.100.3"), InternalPort: 53},
		{Proto: TCP, ExternalPort: 2222, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 22, Filters: []Filter{
			{Prefix: mustPrefix("203.0.113.2/32")},
			{Prefix: mustPrefix("192.0.2.0/24"), Port: 4000},
		}},
	}
}

func TestNFTElementsRoundTrip(t *testing.T) {
	in := append(samplePinholes(),
		// Same internal port as 8080: shares the fwd_pinholes element.
		Pinhole{Proto: TCP, ExternalPort: 8081, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 80},
		Pinhole{Proto: UDP, ExternalPort: 9, InternalAddr: mustAddr("198.51.100.4"), InternalPort: 9,
			Filters: []Filter{{Prefix: mustPrefix("0.0.0.0/0"), Port: 9}}})
	m, err := validateAll(in)
	if err != nil {
		t.Fatal(err)
	}
	st := nftElements(m)
	if n := len(st[nftSetForward]); n != 4 {
		t.Errorf("fwd_pinholes has %d elements, want 4 (one shared)", n)
	}
	got, err := nftPinholes(st)
	if err != nil {
		t.Fatal(err)
	}
	want := sortedPinholes(m)
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip:\n got %v\nwant %v", got, want)
	}
	// allow_tcp element for 192.0.2.0/24 port 4000 on ext 2222, as nft
	// --debug=netlink shows it: 000008ae c0000200 00000fa0 - 000008ae c00002ff 00000fa0
	var found bool
	for _, e := range st[nftAllow(TCP)] {
		found = found || (string(e.Key) == "\x08\xae\x00\x00\xc0\x00\x02\x00\x0f\xa0\x00\x00" &&
			string(e.KeyEnd) == "\x08\xae\x00\x00\xc0\x00\x02\xff\x0f\xa0\x00\x00")
	}
	if !found {
		t.Errorf("allow_tcp elements %x lack the expected encoding", st[nftAllow(TCP)])
	}

	// Diff: replacing one pinhole's target touches only its dnat element
	// and its fwd element.
	m2 := maps2(m)
	p := m2[Key{UDP, 5353}]
	p.InternalPort = 5353
	m2[p.Key()] = p
	del, add := nftDiff(st, nftElements(m2))
	if len(del[nftDNATMap(UDP)]) != 1 || len(add[nftDNATMap(UDP)]) != 1 ||
		len(del[nftSetForward]) != 1 || len(add[nftSetForward]) != 1 || len(del)+len(add) != 4 {
		t.Errorf("diff del=%v add=%v", del, add)
	}
	del, add = nftDiff(st, nftElements(m))
	if len(del)+len(add) != 0 {
		t.Errorf("diff of equal states: del=%v add=%v", del, add)
	}
}

func maps2(m map[Key]Pinhole) map[Key]Pinhole {
	out := make(map[Key]Pinhole, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func TestRangePrefix(t *testing.T) {
	for _, s := range []string{"0.0.0.0/0", "203.0.113.0/24", "203.0.113.2/32", "192.0.2.128/25", "100.64.0.0/10"} {
		p := mustPrefix(s)
		lo, hi := prefixRange(p)
		got, ok := rangePrefix(lo.As4(), hi.As4())
		if !ok || got != p {
			t.Errorf("%v -> %v-%v -> %v %v", p, lo, hi, got, ok)
		}
	}
	if _, ok := rangePrefix([4]byte{192, 0, 2, 1}, [4]byte{192, 0, 2, 2}); ok {
		t.Error("192.0.2.1-192.0.2.2 taken for a prefix")
	}
}

func TestSplitRule(t *testing.T) {
	got := splitRule(`-A X -p tcp -m comment --comment "dpf:tcp:80" -m comment --comment "a \"b\" c" -j ACCEPT`)
	want := []string{"-A", "X", "-p", "tcp", "-m", "comment", "--comment", "dpf:tcp:80", "-m", "comment", "--comment", `a "b" c`, "-j", "ACCEPT"}
	if !slices.Equal(got, want) {
		t.Fatalf("splitRule = %q", got)
	}
}

func newFakeBackend(t *testing.T, f *fakeIPT) *iptBackend {
	t.Helper()
	b, err := newIPTables(Config{WANInterface: "wan0", Logger: testLogger(t)}, f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

const fakeGolden = `filter: -A DPF-FORWARD -s 192.0.2.0/24 -d 198.51.100.2/32 -p tcp -m tcp --sport 4000 --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment dpf:tcp:2222 -j ACCEPT
filter: -A DPF-FORWARD -s 203.0.113.2/32 -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment dpf:tcp:2222 -j ACCEPT
filter: -A DPF-FORWARD -d 198.51.100.2/32 -p tcp -m tcp --dport 22 -m conntrack --ctstate DNAT --ctorigdstport 2222 -m comment --comment dpf:tcp:2222 -j DROP
filter: -A DPF-FORWARD -d 198.51.100.2/32 -p tcp -m tcp --dport 80 -m conntrack --ctstate DNAT --ctorigdstport 8080 -m comment --comment dpf:tcp:8080 -j ACCEPT
filter: -A DPF-FORWARD -d 198.51.100.3/32 -p udp -m udp --dport 53 -m conntrack --ctstate DNAT --ctorigdstport 5353 -m comment --comment dpf:udp:5353 -j ACCEPT
filter: -A FORWARD -j DPF-FORWARD
filter: -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
nat: -A DPF-PREROUTING -p tcp -m tcp --dport 2222 -m comment --comment dpf:tcp:2222 -j DNAT --to-destination 198.51.100.2:22
nat: -A DPF-PREROUTING -p tcp -m tcp --dport 8080 -m comment --comment dpf:tcp:8080 -j DNAT --to-destination 198.51.100.2:80
nat: -A DPF-PREROUTING -p udp -m udp --dport 5353 -m comment --comment dpf:udp:5353 -j DNAT --to-destination 198.51.100.3:53
nat: -A PREROUTING -i wan0 -j DPF-PREROUTING
`

func TestIPTablesFake(t *testing.T) {
	f := newFakeIPT()
	// The system firewall's own rule, which must survive and stay after ours.
	f.chains["filter/FORWARD"] = [][]string{{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}}
	b := newFakeBackend(t, f)
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	if got := f.chains["filter/FORWARD"][0]; !slices.Equal(got, []string{"-j", iptChainForward}) {
		t.Errorf("FORWARD[0] = %q, want our jump", got)
	}
	for _, p := range samplePinholes() {
		if err := b.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	// Sorted by chain then insertion order; reorder by sorting lines.
	if got := sortLines(f.dump()); got != sortLines(fakeGolden) {
		t.Fatalf("rules:\n%s\nwant:\n%s", got, sortLines(fakeGolden))
	}

	// Idempotence: adding again changes nothing, not even by delete+add.
	f.calls = nil
	for _, p := range samplePinholes() {
		if err := b.Add(p); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	if len(f.calls) != 0 {
		t.Errorf("re-adding made calls %q", f.calls)
	}
	got, err := b.Installed()
	if err != nil {
		t.Fatal(err)
	}
	want, _ := validateAll(samplePinholes())
	if !reflect.DeepEqual(got, sortedPinholes(want)) {
		t.Errorf("Installed = %v\nwant %v", got, sortedPinholes(want))
	}

	// Replace: a different target for 8080.
	p := samplePinholes()[0]
	p.InternalPort = 8000
	if err := b.Add(p); err != nil {
		t.Fatal(err)
	}
	if d := f.dump(); strings.Contains(d, "198.51.100.2:80\n") || strings.Count(d, "dpf:tcp:8080") != 2 ||
		!strings.Contains(d, "--dport 8000 -m conntrack --ctstate DNAT --ctorigdstport 8080") {
		t.Errorf("after replacing 8080:\n%s", d)
	}

	// Remove twice.
	for range 2 {
		if err := b.Remove(Key{TCP, 2222}); err != nil {
			t.Fatal(err)
		}
	}
	if strings.Contains(f.dump(), "2222") {
		t.Errorf("2222 still there:\n%s", f.dump())
	}

	// Sync is one iptables-restore (plus jump checks), and restores.
	f.chains["nat/DPF-PREROUTING"] = nil
	f.chains["nat/PREROUTING"] = nil
	f.calls = nil
	if err := b.Sync(samplePinholes()); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(f.calls, []string{"restore", "insert nat/PREROUTING"}) {
		t.Errorf("Sync calls = %q", f.calls)
	}
	if got := sortLines(f.dump()); got != sortLines(fakeGolden) {
		t.Fatalf("after Sync:\n%s\nwant:\n%s", got, sortLines(fakeGolden))
	}

	// Without iptables-restore: the same result rule by rule.
	f.noRestore = true
	if err := b.Sync(samplePinholes()); err != nil {
		t.Fatal(err)
	}
	if got := sortLines(f.dump()); got != sortLines(fakeGolden) {
		t.Fatalf("after slow Sync:\n%s", got)
	}

	// WAN change: Init moves the jump.
	b.cfg.WANInterface = "wan1"
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	if got := f.chains["nat/PREROUTING"]; len(got) != 1 || !slices.Equal(got[0], []string{"-i", "wan1", "-j", iptChainNAT}) {
		t.Errorf("PREROUTING after WAN change: %q", got)
	}

	// Someone puts a rule before our FORWARD jump: Init puts ours first again.
	f.chains["filter/FORWARD"] = slices.Insert(f.chains["filter/FORWARD"], 0, []string{"-j", "DROP"})
	if err := b.Init(); err != nil {
		t.Fatal(err)
	}
	if fw := f.chains["filter/FORWARD"]; len(fw) != 3 || !slices.Equal(fw[0], []string{"-j", iptChainForward}) {
		t.Errorf("FORWARD = %q", fw)
	}

	// Cleanup: only the system's rules are left; twice is fine.
	for range 2 {
		if err := b.Cleanup(); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.dump(); got != "filter: -A FORWARD -j DROP\nfilter: -A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n" {
		t.Errorf("after Cleanup:\n%s", got)
	}
	if ok, _ := f.ChainExists("nat", iptChainNAT); ok {
		t.Error("DPF-PREROUTING survived Cleanup")
	}
	// Add after Cleanup re-creates the chains.
	if err := b.Add(samplePinholes()[0]); err != nil {
		t.Fatal(err)
	}
	if ps, _ := b.Installed(); len(ps) != 1 {
		t.Errorf("Installed after Add on clean system = %v", ps)
	}
}

func sortLines(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	slices.Sort(l)
	return strings.Join(l, "\n") + "\n"
}
