package systest

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/pcp"
)

// healDeadline is what the issue asks: every pinhole back within 2 s of
// someone removing dpfd's rules. healSlack is added before the test fails,
// for a machine loaded by other tests (dpfd repairs in 0.1 to 1.3 s here:
// at once on a notification, or at its next once-a-second check when the
// damage came right after a change of dpfd's own); a run over the
// deadline but within the slack is logged.
const (
	healDeadline = 2 * time.Second
	healSlack    = time.Second
)

// healPoll is how often the test reads the rules while waiting.
const healPoll = 50 * time.Millisecond

// TestSelfHealingFirewall: for each backend, with NAT-PMP and PCP leases of
// two LAN hosts, each way of removing dpfd's rules from outside (a ruleset
// flush, a deleted table, iptables flushes, a firewall reload with nft -f)
// is repaired by the running dpfd within 2 s: the rules equal the leases
// again, without duplicates, every pinhole forwards from the internet host,
// and dpfd was not restarted.
func TestSelfHealingFirewall(t *testing.T) {
	needTools(t)
	reload := filepath.Join(t.TempDir(), "reload.nft")
	// A firewall reload as nftables.service or fw4 does it: one file,
	// one transaction, flushing everything first.
	if err := os.WriteFile(reload, []byte(`flush ruleset
table inet fw {
	chain input {
		type filter hook input priority filter; policy accept;
		tcp dport 22 accept
	}
}
`), 0o644); err != nil {
		t.Fatal(err)
	}
	damages := map[string][][]string{
		"nftables": {
			{"nft", "flush", "ruleset"},
			{"nft", "delete", "table", "ip", "dpf"},
			{"nft", "-f", reload},
		},
		"iptables": {
			{"iptables", "-t", "nat", "-F"},
			{"iptables", "-F"},
			{"nft", "flush", "ruleset"},
			{"nft", "delete", "table", "ip", "nat"}, // iptables-nft's table of dpfd's DNAT chain
			{"nft", "-f", reload},
		},
	}
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 2)
			r.start()
			started := time.Now()
			pid := r.cmd.Process.Pid
			r.echoServers(0, 8080)
			r.echoServers(0, 8443)
			r.echoServers(1, 9000)
			type hole struct {
				proto string
				port  uint16
			}
			var holes []hole
			for _, m := range []struct {
				host  int
				proto string
				port  string
			}{{0, "tcp", "8080"}, {0, "udp", "8080"}, {1, "tcp", "9000"}} {
				ext, _, err := r.natpmpc(m.host, "-a", m.port, m.port, m.proto, "3600")
				if err != nil {
					t.Fatal(err)
				}
				holes = append(holes, hole{m.proto, ext})
			}
			// A PCP mapping with a FILTER (allow sets, or ACCEPT and
			// DROP rules) admitting the internet host.
			req := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: 3600, ClientAddr: lab.LANHost(0),
				Map:     pcp.MapData{Protocol: 6, InternalPort: 8443, ExternalPort: 8443},
				Options: []pcp.Option{pcp.FilterOption(pcp.Filter{Prefix: netip.PrefixFrom(lab.Inet, 32)})}}
			copy(req.Map.Nonce[:], "heal-test-nc")
			reply, err := r.ask(req.AppendTo(nil), 3*time.Second)
			if err != nil || reply == nil {
				t.Fatalf("no PCP reply: %v", err)
			}
			resp, err := pcp.ParseResponse(reply)
			if err != nil || resp.Result != pcp.ResultSuccess {
				t.Fatalf("PCP MAP: %+v %v", resp, err)
			}
			holes = append(holes, hole{"tcp", resp.Map.ExternalPort})
			for _, h := range holes {
				r.mustReach(h.proto, h.port)
			}
			leases := r.leases()
			if len(leases) != len(holes) {
				t.Fatalf("%d leases, want %d: %+v", len(leases), len(holes), leases)
			}
			if err := r.rulesMatch(leases); err != nil {
				t.Fatalf("rules before any damage: %v", err)
			}
			repairs0 := r.statusOf(t).Counters["firewall_repairs"]

			for i, dm := range damages[be] {
				name := strings.Join(dm, " ")
				if i > 0 {
					// The first damage comes right after dpfd's
					// own changes (the leases made above), whose
					// notifications the iptables backend leaves
					// out, so its repair waits for the periodic
					// check; the others come a moment after the
					// last repair and take the notification path.
					time.Sleep(300 * time.Millisecond)
				}
				start := time.Now()
				if out, err := r.lab.Output(20*time.Second, r.lab.Router, dm[0], dm[1:]...); err != nil {
					t.Fatalf("%s: %v\n%s", name, err, out)
				}
				var took time.Duration
				for deadline := start.Add(healDeadline + healSlack); ; {
					err := r.rulesMatch(leases)
					if err == nil {
						took = time.Since(start)
						break
					}
					if time.Now().After(deadline) {
						t.Fatalf("after %s: rules not restored: %v", name, err)
					}
					time.Sleep(healPoll)
				}
				t.Logf("%s: rules restored after %v", name, took.Round(time.Millisecond))
				if took > healDeadline {
					t.Logf("%s: over the %v deadline (within the slack for a loaded machine)", name, healDeadline)
				}
				for _, h := range holes {
					r.mustReach(h.proto, h.port)
				}
				// Counted once the repair returns, a moment after
				// the rules are back.
				want := repairs0 + uint64(i) + 1
				for range 20 {
					if r.statusOf(t).Counters["firewall_repairs"] >= want {
						break
					}
					time.Sleep(healPoll)
				}
				if got := r.statusOf(t).Counters["firewall_repairs"]; got < want {
					t.Errorf("after %s: firewall_repairs %d, want at least %d", name, got, want)
				}
			}

			// The same process all along, holding the same leases.
			if err := syscall.Kill(pid, 0); err != nil || r.cmd.ProcessState != nil {
				t.Fatalf("dpfd (pid %d) is gone: %v", pid, err)
			}
			if st := r.statusOf(t); st.Uptime < time.Since(started).Seconds()-1 {
				t.Errorf("uptime %.1f s: dpfd restarted", st.Uptime)
			}
			after := r.leases()
			if len(after) != len(leases) {
				t.Fatalf("leases changed: %+v", after)
			}
			if !strings.Contains(r.logBuf.String(), "firewall changed outside dpfd; restored") {
				t.Error("no repair in dpfd's log")
			}
		})
	}
}

// statusOf returns dpfd's status over the control socket.
func (r *router) statusOf(t *testing.T) control.Status {
	t.Helper()
	var st control.Status
	if err := control.Call(filepath.Join(r.dir, "dpfd.sock"), control.MethodStatus, nil, &st); err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// rulesMatch reads the router's rules (as text: for checking only) and
// reports how they differ from what ls need: each lease's pinhole exactly
// once, nothing else, and dpfd's hooks or jumps exactly once.
func (r *router) rulesMatch(ls []control.Lease) error {
	if r.backend == "nftables" {
		return r.nftRulesMatch(ls)
	}
	return r.iptRulesMatch(ls)
}

func (r *router) nftRulesMatch(ls []control.Lease) error {
	out, err := r.lab.Output(10*time.Second, r.lab.Router, "nft", "-j", "list", "ruleset")
	if err != nil {
		return fmt.Errorf("nft list ruleset: %v: %s", err, out)
	}
	var doc struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &doc); err != nil {
		return fmt.Errorf("nft -j: %v", err)
	}
	type object struct {
		Family string            `json:"family"`
		Table  string            `json:"table"`
		Name   string            `json:"name"`
		Chain  string            `json:"chain"`
		Elem   []json.RawMessage `json:"elem"`
	}
	tables := 0
	rules := map[string]int{}
	elems := map[string][]json.RawMessage{}
	for _, item := range doc.Nftables {
		for kind, raw := range item {
			var o object
			if kind == "metainfo" || json.Unmarshal(raw, &o) != nil || o.Family != "ip" {
				continue
			}
			switch {
			case kind == "table" && o.Name == "dpf":
				tables++
			case kind == "rule" && o.Table == "dpf":
				rules[o.Chain]++
			case (kind == "map" || kind == "set") && o.Table == "dpf":
				elems[o.Name] = o.Elem
			}
		}
	}
	if tables != 1 {
		return fmt.Errorf("%d tables ip dpf", tables)
	}
	if want := map[string]int{"filter_pre": 2, "dnat_pre": 2, "filter_fwd": 1}; !maps.Equal(rules, want) {
		return fmt.Errorf("rules per chain %v, want %v", rules, want)
	}
	for _, proto := range []string{"tcp", "udp"} {
		var want []string
		for _, l := range ls {
			if l.Proto == proto {
				want = append(want, strconv.Itoa(int(l.ExternalPort)))
			}
		}
		var got []string
		for _, e := range elems["dnat_"+proto] {
			// A map element is [key, value]; the key is the port.
			var pair []json.RawMessage
			if json.Unmarshal(e, &pair) != nil || len(pair) != 2 {
				return fmt.Errorf("dnat_%s element %s", proto, e)
			}
			got = append(got, string(pair[0]))
		}
		slices.Sort(want)
		slices.Sort(got)
		if !slices.Equal(got, want) {
			return fmt.Errorf("dnat_%s ports %v, want %v", proto, got, want)
		}
	}
	return nil
}

var iptTagRE = regexp.MustCompile(`--comment "?(dpf:[a-z]+:\d+)"?`)

func (r *router) iptRulesMatch(ls []control.Lease) error {
	out, err := r.lab.Output(10*time.Second, r.lab.Router, "iptables-save")
	if err != nil {
		return fmt.Errorf("iptables-save: %v: %s", err, out)
	}
	var forward []string
	jumpsNAT, jumpsFwd := 0, 0
	nat, fwd := map[string]int{}, map[string]int{}
	for _, l := range strings.Split(out, "\n") {
		switch {
		case strings.HasPrefix(l, "-A FORWARD "):
			forward = append(forward, l)
			if l == "-A FORWARD -j DPF-FORWARD" {
				jumpsFwd++
			}
		case l == "-A PREROUTING -i wan0 -j DPF-PREROUTING":
			jumpsNAT++
		case strings.HasPrefix(l, "-A DPF-PREROUTING "), strings.HasPrefix(l, "-A DPF-FORWARD "):
			m := iptTagRE.FindStringSubmatch(l)
			if m == nil {
				return fmt.Errorf("untagged rule in dpfd's chain: %s", l)
			}
			if strings.HasPrefix(l, "-A DPF-PREROUTING ") {
				nat[m[1]]++
			} else {
				fwd[m[1]]++
			}
		}
	}
	if jumpsNAT != 1 || jumpsFwd != 1 || len(forward) == 0 || forward[0] != "-A FORWARD -j DPF-FORWARD" {
		return fmt.Errorf("jumps: %d in PREROUTING, %d in FORWARD (FORWARD: %q)", jumpsNAT, jumpsFwd, forward)
	}
	wantNAT, wantFwd := map[string]int{}, map[string]int{}
	for _, l := range ls {
		tag := fmt.Sprintf("dpf:%s:%d", l.Proto, l.ExternalPort)
		wantNAT[tag] = 1
		wantFwd[tag] = 1 // one ACCEPT, or one ACCEPT per filter and a DROP
		if n := len(l.Filters); n > 0 {
			wantFwd[tag] = n + 1
		}
	}
	if !maps.Equal(nat, wantNAT) || !maps.Equal(fwd, wantFwd) {
		return fmt.Errorf("rules per pinhole: DNAT %v, forward %v; want %v, %v", nat, fwd, wantNAT, wantFwd)
	}
	return nil
}
