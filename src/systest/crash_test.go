package systest

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
	"github.com/dpf-router/dpf/src/store"
)

// The crash test's sizes: the minimums (2,000 requests, 20 kills,
// several LAN hosts), which keep it well under two minutes per backend.
const (
	crashHosts        = 4
	crashFirstPort    = 7000 // each host maps internal ports 7000-7005, TCP and UDP
	crashPortsPerHost = 6
	crashMinRequests  = 2000
	crashMinKills     = 20
	// crashLifetime is the lifetime every map request asks for: far
	// longer than the test, so no lease expires during it.
	crashLifetime = 3000
	// crashKillDelayMax bounds the random time dpfd runs between two
	// kills (after it answers again).
	crashKillDelayMax = 800 * time.Millisecond
	// crashBurstLimit bounds the whole burst; reaching it without the
	// counts is a failure (dpfd not answering, or far too slow).
	crashBurstLimit = 180 * time.Second
	// crashSkipShare is the share of requests sent only once, without
	// retransmission, waiting crashSkipWait for the reply: like a client
	// that gives up, they leave their mapping uncertain when dpfd dies
	// before replying.
	crashSkipShare = 0.125
	crashSkipWait  = time.Second
	// crashMinAckedShare is the share of requests that must have been
	// answered: most requests must really reach dpfd, or the test proves
	// nothing.
	crashMinAckedShare = 0.8
)

// crashAttemptWaits are how long a client waits for a reply before each
// retransmission; a request with no reply after all of them (4.6 s, so
// across a restart) leaves its mapping uncertain.
var crashAttemptWaits = []time.Duration{300 * time.Millisecond, 500 * time.Millisecond, 800 * time.Millisecond,
	time.Second, time.Second, time.Second}

// crashDeleteShare is, by backend, the chance that a request on a present
// mapping deletes it rather than renews it. Creating or deleting costs a
// store write and a firewall change, renewing neither; the iptables
// backend's changes are much slower (an iptables process for each step, tens
// of milliseconds on a loaded machine), so its burst renews more, to keep it
// within the time target. Either way hundreds of creations and deletions
// are under way when the kills come.
var crashDeleteShare = map[string]float64{"nftables": 0.4, "iptables": 0.1}

// TestCrashConsistency kills dpfd with SIGKILL at random moments (at least
// 20 times) during a burst of at least 2,000 PCP and NAT-PMP map, renew and
// delete requests from four LAN hosts, restarting it each time with the
// same database. The clients are independent of dpfd's code: raw packets
// built with the codecs, a fresh socket per request, bounded
// retransmissions. For every mapping they track the last acknowledged
// outcome; a request that got no reply makes its mapping uncertain until
// the next acknowledged one.
//
// After every kill, while dpfd is down, the store must hold every
// acknowledged mapping with the external port the client was told and no
// acknowledged deletion; after every restart no kernel rule (or jump) may
// appear twice. At the end, with the clients stopped: dpfd's leases, the
// store and the kernel rules (nft -j list ruleset / iptables-save) must
// agree exactly with each other and with the acknowledged outcomes, and
// after a last kill and restart the internet host must reach every
// acknowledged mapping (all of them are checked) and not reach the
// external ports of acknowledged deletions that no lease uses now.
func TestCrashConsistency(t *testing.T) {
	needTools(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) { crashTest(t, be) })
	}
}

func crashTest(t *testing.T, backend string) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("DPF_CRASH_SEED"); s != "" {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			t.Fatalf("DPF_CRASH_SEED: %v", err)
		}
		seed = n
	}
	t.Logf("seed %d (set DPF_CRASH_SEED to repeat the request and kill sequence)", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	r := newRouter(t, backend, crashHosts)
	writeCrashConfig(t, r)
	r.start()
	m := newCrashModel()
	for h := range crashHosts {
		for i := range crashPortsPerHost {
			r.echoServers(h, uint16(crashFirstPort+i))
		}
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var stopOnce sync.Once
	halt := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	defer halt() // also on a failure below, before the lab goes
	for h := range crashHosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.client(r.lab.LAN[h], h, crashDeleteShare[backend], rand.New(rand.NewPCG(seed, uint64(h+1))), stop)
		}()
	}

	start := time.Now()
	kills := 0
	for kills < crashMinKills {
		if time.Since(start) > crashBurstLimit {
			t.Fatalf("after %v: %d kills, %d requests (want %d and %d)", crashBurstLimit, kills, m.sentCount(), crashMinKills, crashMinRequests)
		}
		delay := crashKillDelayMax
		if sent := m.sentCount(); sent > 0 && sent < crashMinRequests {
			// Spread the kills left over the rest of the burst, as
			// far as the rate so far (restarts included) tells.
			rest := time.Duration(float64(time.Since(start)) * float64(crashMinRequests-sent) / float64(sent))
			delay = min(max(delay, 2*rest/time.Duration(crashMinKills-kills)), 4*crashKillDelayMax)
		}
		time.Sleep(time.Duration(rng.Int64N(int64(delay))))
		crashKill(t, r)
		kills++
		// dpfd is down: the store cannot change, and every
		// acknowledged outcome must be in it.
		if bad := m.verify(loadStore(t, r), "store"); len(bad) > 0 {
			t.Fatalf("after kill %d, the store disagrees with acknowledged replies:\n%s", kills, strings.Join(bad, "\n"))
		}
		r.start()
		if _, bad := kernelMappings(t, r, false); len(bad) > 0 {
			t.Fatalf("after restart %d, kernel rules:\n%s", kills, strings.Join(bad, "\n"))
		}
	}
	for m.sentCount() < crashMinRequests {
		if time.Since(start) > crashBurstLimit {
			t.Fatalf("after %v: %d requests, want %d", crashBurstLimit, m.sentCount(), crashMinRequests)
		}
		time.Sleep(50 * time.Millisecond)
	}
	halt()
	sent, acked, lost, retried := m.counts()
	t.Logf("%d requests (%d answered, %d of them after a retransmission; %d unanswered), %d kills, in %v",
		sent, acked, retried, lost, kills, time.Since(start).Round(time.Millisecond))
	if float64(acked) < crashMinAckedShare*float64(sent) {
		t.Fatalf("only %d of %d requests were answered", acked, sent)
	}
	if errs := m.problems(); len(errs) > 0 {
		t.Fatalf("%d bad replies, first ones:\n%s", len(errs), strings.Join(errs[:min(len(errs), 20)], "\n"))
	}

	// Quiet now: dpfd's leases, the kernel and the acknowledged outcomes
	// agree exactly.
	live := controlMappings(r)
	if bad := m.verify(live, "dpfd"); len(bad) > 0 {
		t.Fatalf("dpfd's leases disagree with acknowledged replies:\n%s", strings.Join(bad, "\n"))
	}
	checkKernelExactly(t, r, live)

	// One more crash: the store holds exactly what dpfd listed.
	crashKill(t, r)
	stored := loadStore(t, r)
	if bad := sameMappings(stored, live); len(bad) > 0 {
		t.Fatalf("the store after a last kill differs from dpfd's leases before it:\n%s", strings.Join(bad, "\n"))
	}
	if bad := m.verify(stored, "store"); len(bad) > 0 {
		t.Fatalf("the store disagrees with acknowledged replies:\n%s", strings.Join(bad, "\n"))
	}
	r.start()
	checkKernelExactly(t, r, controlMappings(r))

	// Traffic: every acknowledged mapping forwards; the external ports of
	// acknowledged deletions that no lease uses now do not.
	present, deleted := m.settled()
	for _, mp := range present {
		if err := r.reach(mp.proto, lab.Inet, mp.ext); err != nil {
			t.Errorf("acknowledged mapping %s/%d -> %s not reachable: %v", mp.proto, mp.ext, mp.to, err)
		}
	}
	inUse := make(map[string]bool)
	for _, mp := range stored {
		inUse[mp.proto+"/"+strconv.Itoa(int(mp.ext))] = true
	}
	checked := 0
	for _, mp := range deleted {
		if inUse[mp.proto+"/"+strconv.Itoa(int(mp.ext))] {
			continue
		}
		checked++
		if err := r.reach(mp.proto, lab.Inet, mp.ext); err == nil {
			t.Errorf("acknowledged deletion %s/%d (was -> %s) still forwards", mp.proto, mp.ext, mp.to)
		}
	}
	t.Logf("at the end: %d leases, %d acknowledged mappings reached, %d deleted ports checked closed", len(stored), len(present), checked)
}

// writeCrashConfig replaces the router's configuration with one for the
// burst: no rate limit worth the name, room for every mapping of a host,
// lifetimes up to an hour, and info logging (debug would log every renewal).
func writeCrashConfig(t *testing.T, r *router) {
	cfg := fmt.Sprintf(`config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend '%s'
	option db '%s'
	option socket '%s'
	option max_lifetime '3600'
	option max_per_host '64'
	option rate_limit '100000'
	option rate_burst '100000'
	option log_level 'info'
`, r.backend, filepath.Join(r.dir, "leases.db"), filepath.Join(r.dir, "dpfd.sock"))
	if err := os.WriteFile(r.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// crashKill kills dpfd with SIGKILL, waits for it, and fails the test if it
// had already died on its own.
func crashKill(t *testing.T, r *router) {
	t.Helper()
	err := lab.Stop(r.cmd, syscall.SIGKILL)
	r.cmd = nil
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("dpfd: %v", err)
	}
	if ws, ok := ee.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("dpfd exited by itself (%v) before it was killed", err)
	}
}

// crashMapping is one port forwarding as the store, dpfd's lease list or
// the kernel rules describe it. origin is "pcp" or "natpmp" for leases and
// empty for kernel rules.
type crashMapping struct {
	proto  string
	ext    uint16
	to     netip.AddrPort
	origin string
}

func (mp crashMapping) String() string {
	return fmt.Sprintf("%s/%d -> %s (%s)", mp.proto, mp.ext, mp.to, mp.origin)
}

// loadStore reads the lease database of a stopped dpfd.
func loadStore(t *testing.T, r *router) []crashMapping {
	t.Helper()
	st, err := store.Open(filepath.Join(r.dir, "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, bad, err := st.Load()
	if err != nil || len(bad) > 0 {
		t.Fatalf("loading the store: %v, unreadable records %v", err, bad)
	}
	out := make([]crashMapping, 0, len(ls))
	for _, l := range ls {
		out = append(out, crashMapping{l.Proto.String(), l.ExternalPort,
			netip.AddrPortFrom(l.InternalAddr, l.InternalPort), string(l.Origin)})
	}
	return out
}

// controlMappings returns dpfd's leases, asked over its control socket.
func controlMappings(r *router) []crashMapping {
	r.t.Helper()
	var out []crashMapping
	for _, l := range r.leases() {
		a, err := netip.ParseAddr(l.InternalAddr)
		if err != nil {
			r.t.Fatalf("lease %+v: %v", l, err)
		}
		out = append(out, crashMapping{l.Proto, l.ExternalPort, netip.AddrPortFrom(a, l.InternalPort), l.Origin})
	}
	return out
}

// sameMappings compares two lists of leases, ignoring order.
func sameMappings(got, want []crashMapping) []string {
	var bad []string
	index := func(ms []crashMapping) map[crashMapping]bool {
		s := make(map[crashMapping]bool)
		for _, mp := range ms {
			s[mp] = true
		}
		return s
	}
	g, w := index(got), index(want)
	for mp := range w {
		if !g[mp] {
			bad = append(bad, "missing: "+mp.String())
		}
	}
	for mp := range g {
		if !w[mp] {
			bad = append(bad, "extra: "+mp.String())
		}
	}
	return bad
}

// checkKernelExactly requires the kernel rules to implement exactly the
// leases, each once, with every jump into dpfd's chains present once.
func checkKernelExactly(t *testing.T, r *router, leases []crashMapping) {
	t.Helper()
	rules, bad := kernelMappings(t, r, true)
	want := make([]crashMapping, len(leases))
	for i, l := range leases {
		l.origin = ""
		want[i] = l
	}
	bad = append(bad, sameMappings(rules, want)...)
	if len(bad) > 0 {
		t.Fatalf("kernel rules against leases:\n%s", strings.Join(bad, "\n"))
	}
}

// kernelMappings reads dpfd's rules in the router as text (nft -j list
// ruleset or iptables-save) and returns the pinholes they implement, plus
// what is wrong with them: a rule, set element or jump that appears twice,
// a DNAT without its forward accept or the other way round, a rule that
// belongs to no pinhole. With exact, a missing jump or table is wrong too;
// without (while dpfd may be changing rules), only duplicates and orphans
// are.
func kernelMappings(t *testing.T, r *router, exact bool) ([]crashMapping, []string) {
	t.Helper()
	if r.backend == "nftables" {
		out, err := r.lab.Output(20*time.Second, r.lab.Router, "nft", "-j", "list", "ruleset")
		if err != nil {
			t.Fatalf("nft -j list ruleset: %v\n%s", err, out)
		}
		ms, bad, err := parseNFTRuleset([]byte(out), exact)
		if err != nil {
			t.Fatalf("%v\n%s", err, out)
		}
		return ms, bad
	}
	out, err := r.lab.Output(20*time.Second, r.lab.Router, "iptables-save")
	if err != nil {
		t.Fatalf("iptables-save: %v\n%s", err, out)
	}
	return parseIPTablesSave(out, exact)
}

// parseNFTRuleset reads the pinholes out of `nft -j list ruleset`: the
// elements of the dnat_tcp and dnat_udp maps of table ip dpf, each of which
// needs its fwd_pinholes element.
func parseNFTRuleset(js []byte, exact bool) ([]crashMapping, []string, error) {
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(js, &doc); err != nil {
		return nil, nil, fmt.Errorf("decoding nft -j output: %w", err)
	}
	type object struct {
		Family string            `json:"family"`
		Table  string            `json:"table"`
		Name   string            `json:"name"`
		Chain  string            `json:"chain"`
		Expr   json.RawMessage   `json:"expr"`
		Elem   []json.RawMessage `json:"elem"`
	}
	var bad []string
	var ms []crashMapping
	fwd := make(map[string]int)
	seen := make(map[string]int)
	tables := 0
	for _, o := range doc.Nftables {
		for kind, raw := range o {
			var obj object
			if kind == "metainfo" {
				continue
			}
			if err := json.Unmarshal(raw, &obj); err != nil {
				return nil, nil, fmt.Errorf("decoding nft %s: %w", kind, err)
			}
			if kind == "table" {
				if obj.Family == "ip" && obj.Name == "dpf" {
					tables++
				}
				continue
			}
			if obj.Family != "ip" || obj.Table != "dpf" {
				continue
			}
			id := kind + " " + obj.Name + obj.Chain + " " + string(obj.Expr)
			if seen[id]++; seen[id] == 2 {
				bad = append(bad, "twice: "+id)
			}
			switch {
			case kind == "map" && (obj.Name == "dnat_tcp" || obj.Name == "dnat_udp"):
				proto := strings.TrimPrefix(obj.Name, "dnat_")
				for _, e := range obj.Elem {
					mp, err := nftDNATElem(proto, e)
					if err != nil {
						return nil, nil, err
					}
					ms = append(ms, mp)
				}
			case kind == "set" && obj.Name == "fwd_pinholes":
				for _, e := range obj.Elem {
					k, err := nftForwardElem(e)
					if err != nil {
						return nil, nil, err
					}
					if fwd[k]++; fwd[k] == 2 {
						bad = append(bad, "forward element twice: "+k)
					}
				}
			case kind == "set" && len(obj.Elem) > 0:
				// filtered_* and allow_*: the burst sends no FILTER.
				bad = append(bad, fmt.Sprintf("set %s has elements though no mapping has filters", obj.Name))
			}
		}
	}
	if tables > 1 || exact && tables != 1 {
		bad = append(bad, fmt.Sprintf("table ip dpf appears %d times", tables))
	}
	dnat := make(map[string]int)
	for _, mp := range ms {
		k := mp.to.Addr().String() + " " + mp.proto + " " + strconv.Itoa(int(mp.to.Port()))
		dnat[k]++
		if fwd[k] == 0 {
			bad = append(bad, "DNAT without forward accept: "+mp.String())
		}
	}
	for k := range fwd {
		if dnat[k] == 0 {
			bad = append(bad, "forward accept without DNAT: "+k)
		}
	}
	return ms, bad, nil
}

// nftValue unwraps an element written with attributes ({"elem": {"val": X,
// ...}}) to X.
func nftValue(raw json.RawMessage) json.RawMessage {
	var wrapped struct {
		Elem *struct {
			Val json.RawMessage `json:"val"`
		} `json:"elem"`
	}
	if json.Unmarshal(raw, &wrapped) == nil && wrapped.Elem != nil {
		return wrapped.Elem.Val
	}
	return raw
}

// nftDNATElem decodes a dnat map element: [EXT, {"concat": [ADDR, PORT]}].
func nftDNATElem(proto string, raw json.RawMessage) (crashMapping, error) {
	var pair []json.RawMessage
	if err := json.Unmarshal(raw, &pair); err != nil || len(pair) != 2 {
		return crashMapping{}, fmt.Errorf("dnat_%s element %s: not [key, value]", proto, raw)
	}
	var ext uint16
	if err := json.Unmarshal(nftValue(pair[0]), &ext); err != nil {
		return crashMapping{}, fmt.Errorf("dnat_%s element %s: %w", proto, raw, err)
	}
	var to struct {
		Concat []json.RawMessage `json:"concat"`
	}
	if err := json.Unmarshal(pair[1], &to); err != nil || len(to.Concat) != 2 {
		return crashMapping{}, fmt.Errorf("dnat_%s element %s: value is not addr . port", proto, raw)
	}
	var addr string
	var port uint16
	if json.Unmarshal(to.Concat[0], &addr) != nil || json.Unmarshal(to.Concat[1], &port) != nil {
		return crashMapping{}, fmt.Errorf("dnat_%s element %s: value is not addr . port", proto, raw)
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return crashMapping{}, fmt.Errorf("dnat_%s element %s: %w", proto, raw, err)
	}
	return crashMapping{proto: proto, ext: ext, to: netip.AddrPortFrom(a, port)}, nil
}

// nftForwardElem decodes a fwd_pinholes element, {"concat": [ADDR, PROTO,
// PORT]}, as "ADDR PROTO PORT".
func nftForwardElem(raw json.RawMessage) (string, error) {
	var e struct {
		Concat []json.RawMessage `json:"concat"`
	}
	if err := json.Unmarshal(nftValue(raw), &e); err != nil || len(e.Concat) != 3 {
		return "", fmt.Errorf("fwd_pinholes element %s: not addr . proto . port", raw)
	}
	var addr string
	var port uint16
	if json.Unmarshal(e.Concat[0], &addr) != nil || json.Unmarshal(e.Concat[2], &port) != nil {
		return "", fmt.Errorf("fwd_pinholes element %s: not addr . proto . port", raw)
	}
	var proto string
	if json.Unmarshal(e.Concat[1], &proto) != nil {
		var n int
		if json.Unmarshal(e.Concat[1], &n) != nil {
			return "", fmt.Errorf("fwd_pinholes element %s: protocol", raw)
		}
		proto = firewall.Proto(n).String()
	}
	return addr + " " + proto + " " + strconv.Itoa(int(port)), nil
}

var (
	iptDNATRE = regexp.MustCompile(`^-A DPF-PREROUTING -p (tcp|udp) -m (?:tcp|udp) --dport (\d+) -m comment --comment "?dpf:(tcp|udp):(\d+)"? -j DNAT --to-destination ([0-9.]+):(\d+)$`)
	iptFwdRE  = regexp.MustCompile(`^-A DPF-FORWARD -d ([0-9.]+)/32 -p (tcp|udp) -m (?:tcp|udp) --dport (\d+) -m conntrack --ctstate DNAT --ctorigdstport (\d+) -m comment --comment "?dpf:(tcp|udp):(\d+)"? -j ACCEPT$`)
)

// parseIPTablesSave reads the pinholes out of iptables-save: the DNAT rules
// in DPF-PREROUTING, each of which needs its ACCEPT in DPF-FORWARD, and the
// two jumps into those chains.
func parseIPTablesSave(out string, exact bool) ([]crashMapping, []string) {
	var bad []string
	var ms []crashMapping
	seen := make(map[string]int)
	fwd := make(map[string]int)
	jumps := map[string]int{"PREROUTING": 0, "FORWARD": 0}
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "-A ") {
			continue
		}
		fields := strings.Fields(line)
		chain := fields[1]
		switch {
		case chain == "PREROUTING" && strings.HasSuffix(line, "-j DPF-PREROUTING"),
			chain == "FORWARD" && strings.HasSuffix(line, "-j DPF-FORWARD"):
			jumps[chain]++
		case strings.HasPrefix(chain, "DPF-"):
		default:
			continue // not dpfd's
		}
		if seen[line]++; seen[line] == 2 {
			bad = append(bad, "twice: "+line)
		}
		if m := iptDNATRE.FindStringSubmatch(line); m != nil {
			a, err := netip.ParseAddr(m[5])
			ext, _ := strconv.Atoi(m[2])
			port, _ := strconv.Atoi(m[6])
			if err != nil || m[1] != m[3] || m[2] != m[4] {
				bad = append(bad, "inconsistent DNAT rule: "+line)
				continue
			}
			ms = append(ms, crashMapping{proto: m[1], ext: uint16(ext), to: netip.AddrPortFrom(a, uint16(port))})
		} else if m := iptFwdRE.FindStringSubmatch(line); m != nil {
			if m[2] != m[5] || m[4] != m[6] {
				bad = append(bad, "inconsistent forward rule: "+line)
				continue
			}
			fwd[m[2]+"/"+m[4]+" -> "+m[1]+":"+m[3]]++
		} else if strings.HasPrefix(chain, "DPF-") {
			bad = append(bad, "rule of no pinhole: "+line)
		}
	}
	for chain, n := range jumps {
		if n > 1 || exact && n != 1 {
			bad = append(bad, fmt.Sprintf("%d jumps from %s into dpfd's chain", n, chain))
		}
	}
	dnat := make(map[string]int)
	for _, mp := range ms {
		k := mp.proto + "/" + strconv.Itoa(int(mp.ext)) + " -> " + mp.to.String()
		if dnat[k]++; dnat[k] == 2 {
			bad = append(bad, "two DNAT rules for "+k)
		}
		if exact && fwd[k] == 0 {
			bad = append(bad, "DNAT without forward accept: "+k)
		}
	}
	for k := range fwd {
		if exact && dnat[k] == 0 {
			bad = append(bad, "forward accept without DNAT: "+k)
		}
	}
	return ms, bad
}

// crashKey is one mapping the clients work on: a LAN host's internal port
// and protocol. Even ports are mapped with PCP, odd ones with NAT-PMP.
type crashKey struct {
	host  int
	proto firewall.Proto
	port  uint16
}

func (k crashKey) pcp() bool { return k.port%2 == 0 }

func (k crashKey) origin() string {
	if k.pcp() {
		return "pcp"
	}
	return "natpmp"
}

// nonce is the key's PCP mapping nonce, the same in every request.
func (k crashKey) nonce() (n [12]byte) {
	copy(n[:], fmt.Sprintf("crash%d%d%05d", k.host, k.proto, k.port))
	return n
}

func (k crashKey) String() string {
	return fmt.Sprintf("%s %s:%d (%s)", k.proto, lab.LANHost(k.host), k.port, k.origin())
}

// crashState is what the clients know of one mapping.
type crashState struct {
	// known: the last request was answered, so present and ext are what
	// dpfd acknowledged. Otherwise the mapping may or may not exist.
	known   bool
	present bool
	ext     uint16 // the external port granted last (kept after a delete)
	// pending: a request is in flight; its outcome is not known yet.
	pending bool
}

// crashModel is the clients' record of acknowledged outcomes. Its methods
// are safe for concurrent use: the clients update it while the test
// goroutine checks the store against it.
type crashModel struct {
	mu      sync.Mutex
	keys    map[crashKey]*crashState
	sent    int
	acked   int
	retried int // answered after a retransmission
	lost    int
	errors  []string // bad replies and broken promises, in order
}

func newCrashModel() *crashModel {
	m := &crashModel{keys: make(map[crashKey]*crashState)}
	for h := range crashHosts {
		for i := range crashPortsPerHost {
			for _, p := range []firewall.Proto{firewall.TCP, firewall.UDP} {
				// A fresh database: every mapping is known absent.
				m.keys[crashKey{h, p, uint16(crashFirstPort + i)}] = &crashState{known: true}
			}
		}
	}
	return m
}

func (m *crashModel) sentCount() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent
}

func (m *crashModel) counts() (sent, acked, lost, retried int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.sent, m.acked, m.lost, m.retried
}

func (m *crashModel) problems() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.errors)
}

// client sends requests for host's mappings, one at a time, until stop is
// closed (the request in flight then still finishes). delShare is the
// chance of deleting rather than renewing a present mapping.
func (m *crashModel) client(ns string, host int, delShare float64, rng *rand.Rand, stop <-chan struct{}) {
	var keys []crashKey
	for k := range m.keys {
		if k.host == host {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, func(a, b crashKey) int { return int(a.port)*256 + int(a.proto) - int(b.port)*256 - int(b.proto) })
	for {
		select {
		case <-stop:
			return
		default:
		}
		k := keys[rng.IntN(len(keys))]
		st := m.begin(k)
		// Present: renew or delete. Absent: mostly create, sometimes
		// delete again (deleting is idempotent). Uncertain: either.
		var del bool
		switch {
		case st.known && st.present:
			del = rng.Float64() < delShare
		case st.known:
			del = rng.IntN(10) == 0
		default:
			del = rng.IntN(2) == 0
		}
		suggest := k.port
		if st.ext != 0 && (st.present || !st.known || rng.IntN(2) == 0) {
			suggest = st.ext
		}
		req := crashRequest(k, del, suggest, rng)
		waits := crashAttemptWaits
		if rng.Float64() < crashSkipShare {
			waits = []time.Duration{crashSkipWait}
		}
		reply, attempts, err := crashExchange(ns, lab.LANHost(host), req, waits)
		m.end(k, del, reply, attempts, err)
	}
}

// crashRequest builds the PCP MAP or NAT-PMP mapping request for k: a
// delete (lifetime 0) or a map with crashLifetime and suggested external
// port suggest (PCP sometimes suggests nothing).
func crashRequest(k crashKey, del bool, suggest uint16, rng *rand.Rand) []byte {
	var life uint32 = crashLifetime
	if del {
		life, suggest = 0, 0
	}
	if !k.pcp() {
		var op uint8 = natpmp.OpMapUDP
		if k.proto == firewall.TCP {
			op = natpmp.OpMapTCP
		}
		return natpmp.Request{Op: op, InternalPort: k.port, SuggestedExternalPort: suggest, Lifetime: life}.AppendTo(nil)
	}
	if rng.IntN(4) == 0 {
		suggest = 0
	}
	return pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: life, ClientAddr: lab.LANHost(k.host),
		Map: pcp.MapData{Nonce: k.nonce(), Protocol: uint8(k.proto), InternalPort: k.port, ExternalPort: suggest}}.AppendTo(nil)
}

// crashExchange sends req from src in namespace ns to dpfd over a fresh
// socket (so that a late reply to an earlier request cannot be taken for
// this one's), once for each of waits, each time waiting that long for a
// reply. It returns the first reply (nil when none came) and how many
// times it sent req.
func crashExchange(ns string, src netip.Addr, req []byte, waits []time.Duration) (reply []byte, attempts int, err error) {
	var c *net.UDPConn
	err = lab.In(ns, func() error {
		var err error
		c, err = net.DialUDP("udp4", &net.UDPAddr{IP: src.AsSlice()}, net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.RouterLAN, 5351)))
		return err
	})
	if err != nil {
		return nil, 0, err
	}
	defer c.Close()
	buf := make([]byte, 1100)
	for _, wait := range waits {
		deadline := time.Now().Add(wait)
		// An error here is the ICMP port unreachable of the previous
		// attempt (dpfd down); the read below sees the same.
		c.Write(req)
		attempts++
		c.SetReadDeadline(deadline)
		n, err := c.Read(buf)
		if err == nil {
			return buf[:n], attempts, nil
		}
		var ne net.Error
		switch {
		case errors.As(err, &ne) && ne.Timeout():
		case errors.Is(err, syscall.ECONNREFUSED):
			// dpfd is down: wait out this attempt before the next.
			time.Sleep(time.Until(deadline))
		default:
			return nil, attempts, err
		}
	}
	return nil, attempts, nil
}

// begin marks a request on k in flight and returns k's state before it.
func (m *crashModel) begin(k crashKey) crashState {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.keys[k]
	st.pending = true
	m.sent++
	return *st
}

// end records the outcome of the request on k: reply is nil when none came.
func (m *crashModel) end(k crashKey, del bool, reply []byte, attempts int, err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.keys[k]
	st.pending = false
	if err != nil {
		m.errors = append(m.errors, fmt.Sprintf("%s: sending: %v", k, err))
		st.known = false
		return
	}
	if reply == nil {
		m.lost++
		st.known = false
		return
	}
	m.acked++
	if attempts > 1 {
		m.retried++
	}
	ext, err := checkCrashReply(k, del, reply)
	if err != nil {
		// An error result changes nothing; a garbled reply may have.
		m.errors = append(m.errors, fmt.Sprintf("%s: %v", k, err))
		return
	}
	if del {
		st.known, st.present = true, false
		return
	}
	if st.known && st.present && ext != st.ext {
		m.errors = append(m.errors, fmt.Sprintf("%s: renewal moved the mapping from external port %d to %d", k, st.ext, ext))
	}
	st.known, st.present, st.ext = true, true, ext
}

// checkCrashReply checks that reply is the success response to the request
// on k and returns the external port it grants (0 for a delete).
func checkCrashReply(k crashKey, del bool, reply []byte) (uint16, error) {
	var want uint32 = crashLifetime
	if del {
		want = 0
	}
	if !k.pcp() {
		resp, err := natpmp.ParseResponse(reply)
		if err != nil {
			return 0, fmt.Errorf("NAT-PMP reply %x: %w", reply, err)
		}
		var op uint8 = natpmp.OpMapUDP
		if k.proto == firewall.TCP {
			op = natpmp.OpMapTCP
		}
		switch {
		case resp.Result != natpmp.ResultSuccess:
			return 0, fmt.Errorf("NAT-PMP result %d", resp.Result)
		case resp.Op != op || resp.InternalPort != k.port || resp.Lifetime != want:
			return 0, fmt.Errorf("NAT-PMP reply %+v does not answer the request", resp)
		case del != (resp.ExternalPort == 0):
			return 0, fmt.Errorf("NAT-PMP reply with external port %d", resp.ExternalPort)
		}
		return resp.ExternalPort, nil
	}
	resp, err := pcp.ParseResponse(reply)
	if err != nil {
		return 0, fmt.Errorf("PCP reply %x: %w", reply, err)
	}
	switch {
	case resp.Result != pcp.ResultSuccess:
		return 0, fmt.Errorf("PCP result %s", pcp.ResultString(resp.Result))
	case resp.Op != pcp.OpMap || resp.Map.Nonce != k.nonce() || resp.Map.Protocol != uint8(k.proto) ||
		resp.Map.InternalPort != k.port || resp.Lifetime != want:
		return 0, fmt.Errorf("PCP reply %+v does not answer the request", resp)
	case !del && (resp.Map.ExternalPort == 0 || resp.Map.ExternalAddr != lab.RouterWAN):
		return 0, fmt.Errorf("PCP reply grants %s:%d", resp.Map.ExternalAddr, resp.Map.ExternalPort)
	}
	if del {
		return 0, nil
	}
	return resp.Map.ExternalPort, nil
}

// verify compares leases (from the store or dpfd, named by where) with
// the acknowledged outcomes: a mapping whose last request was answered with
// success must be there with the external port granted, an acknowledged
// deletion must not. Mappings with a request in flight or unanswered are
// skipped, but no lease may exist that the clients never asked for.
func (m *crashModel) verify(leases []crashMapping, where string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var bad []string
	byKey := make(map[crashKey]crashMapping)
	for _, l := range leases {
		h := int(l.to.Addr().As4()[3]) - 2 // lab.LANHost(h) is .h+2
		var p firewall.Proto
		switch l.proto {
		case "tcp":
			p = firewall.TCP
		case "udp":
			p = firewall.UDP
		}
		k := crashKey{h, p, l.to.Port()}
		if _, ok := m.keys[k]; !ok || lab.LANHost(h) != l.to.Addr() {
			bad = append(bad, fmt.Sprintf("%s has a lease no client asked for: %s", where, l))
			continue
		}
		if l.origin != k.origin() {
			bad = append(bad, fmt.Sprintf("%s has %s, made with %s", where, l, k.origin()))
		}
		if old, dup := byKey[k]; dup {
			bad = append(bad, fmt.Sprintf("%s has two leases for %s: %s and %s", where, k, old, l))
		}
		byKey[k] = l
	}
	for k, st := range m.keys {
		if st.pending || !st.known {
			continue
		}
		l, ok := byKey[k]
		switch {
		case st.present && !ok:
			bad = append(bad, fmt.Sprintf("%s lacks acknowledged mapping %s -> external %d", where, k, st.ext))
		case st.present && l.ext != st.ext:
			bad = append(bad, fmt.Sprintf("%s maps %s to external %d, the client was told %d", where, k, l.ext, st.ext))
		case !st.present && ok:
			bad = append(bad, fmt.Sprintf("%s still has %s after its deletion was acknowledged", where, l))
		}
	}
	slices.Sort(bad)
	return bad
}

// settled returns the acknowledged mappings and the last external port of
// each acknowledged deletion.
func (m *crashModel) settled() (present, deleted []crashMapping) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for k, st := range m.keys {
		if !st.known || st.pending || st.ext == 0 {
			continue
		}
		mp := crashMapping{proto: k.proto.String(), ext: st.ext, to: netip.AddrPortFrom(lab.LANHost(k.host), k.port), origin: k.origin()}
		if st.present {
			present = append(present, mp)
		} else {
			deleted = append(deleted, mp)
		}
	}
	return present, deleted
}
