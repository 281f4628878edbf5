package systest

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The OpenWrt firewall hooks of files/, tested against rulesets shaped like
// the ones fw4 and fw3 generate for OpenWrt's default /etc/config/firewall
// (zones lan and wan, forward policy REJECT, wan zone input REJECT and
// forward DROP, masquerading), with the lab's devices: wan0 and br-lan.

// fw4Ruleset is what fw4 loads for the default configuration (modelled on
// firewall4's templates/ruleset.uc and its test expectations; no flowtable
// and no conntrack helpers). forwardPost are the files included at the end
// of chain forward, where fw4 puts /usr/share/nftables.d/chain-post/forward/.
// Like fw4's, it starts by flushing table inet fw4, so loading it again is
// what "fw4 reload" does: one atomic transaction rebuilding only that table.
func fw4Ruleset(forwardPost ...string) string {
	var inc strings.Builder
	for _, p := range forwardPost {
		fmt.Fprintf(&inc, "\t\tinclude %q\n", p)
	}
	return `table inet fw4
flush table inet fw4

table inet fw4 {
	define lan_devices = { "br-lan" }
	define wan_devices = { "wan0" }

	chain input {
		type filter hook input priority filter; policy drop;
		iif "lo" accept comment "!fw4: Accept traffic from loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle inbound flows"
		tcp flags & (fin | syn | rst | ack) == syn jump syn_flood comment "!fw4: Rate limit TCP syn packets"
		iifname "br-lan" jump input_lan comment "!fw4: Handle lan IPv4/IPv6 input traffic"
		iifname "wan0" jump input_wan comment "!fw4: Handle wan IPv4/IPv6 input traffic"
		jump handle_reject
	}

	chain forward {
		type filter hook forward priority filter; policy drop;
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle forwarded flows"
		iifname "br-lan" jump forward_lan comment "!fw4: Handle lan IPv4/IPv6 forward traffic"
		iifname "wan0" jump forward_wan comment "!fw4: Handle wan IPv4/IPv6 forward traffic"
` + inc.String() + `		jump handle_reject
	}

	chain output {
		type filter hook output priority filter; policy accept;
		oif "lo" accept comment "!fw4: Accept traffic towards loopback"
		ct state vmap { established : accept, related : accept } comment "!fw4: Handle outbound flows"
		oifname "br-lan" jump output_lan comment "!fw4: Handle lan IPv4/IPv6 output traffic"
		oifname "wan0" jump output_wan comment "!fw4: Handle wan IPv4/IPv6 output traffic"
	}

	chain prerouting {
		type filter hook prerouting priority filter; policy accept;
	}

	chain handle_reject {
		meta l4proto tcp reject with tcp reset comment "!fw4: Reject TCP traffic"
		reject with icmpx type port-unreachable comment "!fw4: Reject any other traffic"
	}

	chain syn_flood {
		limit rate 25/second burst 50 packets return comment "!fw4: Accept SYN packets below rate-limit"
		drop comment "!fw4: Drop excess packets"
	}

	chain input_lan {
		jump accept_from_lan
	}

	chain output_lan {
		jump accept_to_lan
	}

	chain forward_lan {
		jump accept_to_wan comment "!fw4: Accept lan to wan forwarding"
		jump accept_to_lan
	}

	chain accept_from_lan {
		iifname "br-lan" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
	}

	chain accept_to_lan {
		oifname "br-lan" counter accept comment "!fw4: accept lan IPv4/IPv6 traffic"
	}

	chain input_wan {
		meta nfproto ipv4 udp dport 68 counter accept comment "!fw4: Allow-DHCP-Renew"
		meta nfproto ipv4 icmp type echo-request counter accept comment "!fw4: Allow-Ping"
		jump reject_from_wan
	}

	chain output_wan {
		jump accept_to_wan
	}

	chain forward_wan {
		meta l4proto esp counter jump accept_to_lan comment "!fw4: Allow-IPSec-ESP"
		udp dport 500 counter jump accept_to_lan comment "!fw4: Allow-ISAKMP"
		jump drop_to_wan
	}

	chain accept_to_wan {
		meta nfproto ipv4 oifname "wan0" ct state invalid counter drop comment "!fw4: Prevent NAT leakage"
		oifname "wan0" counter accept comment "!fw4: accept wan IPv4/IPv6 traffic"
	}

	chain reject_from_wan {
		iifname "wan0" counter jump handle_reject comment "!fw4: reject wan IPv4/IPv6 traffic"
	}

	chain drop_to_wan {
		oifname "wan0" counter drop comment "!fw4: drop wan IPv4/IPv6 traffic"
	}

	chain dstnat {
		type nat hook prerouting priority dstnat; policy accept;
	}

	chain srcnat {
		type nat hook postrouting priority srcnat; policy accept;
		oifname "wan0" jump srcnat_wan comment "!fw4: Handle wan IPv4/IPv6 srcnat traffic"
	}

	chain srcnat_wan {
		meta nfproto ipv4 masquerade comment "!fw4: Masquerade IPv4 wan traffic"
	}

	chain raw_prerouting {
		type filter hook prerouting priority raw; policy accept;
	}

	chain raw_output {
		type filter hook output priority raw; policy accept;
	}

	chain mangle_prerouting {
		type filter hook prerouting priority mangle; policy accept;
	}

	chain mangle_postrouting {
		type filter hook postrouting priority mangle; policy accept;
		oifname "wan0" tcp flags syn / syn,fin,rst tcp option maxseg size set rt mtu comment "!fw4: Zone wan IPv4/IPv6 egress MTU fixing"
	}

	chain mangle_input {
		type filter hook input priority mangle; policy accept;
	}

	chain mangle_output {
		type route hook output priority mangle; policy accept;
	}

	chain mangle_forward {
		type filter hook forward priority mangle; policy accept;
		iifname "wan0" tcp flags syn / syn,fin,rst tcp option maxseg size set rt mtu comment "!fw4: Zone wan IPv4/IPv6 ingress MTU fixing"
	}
}
`
}

// routerCmd runs a command in the router namespace and fails on error.
func (r *router) routerCmd(name string, args ...string) string {
	r.t.Helper()
	out, err := r.lab.Output(20*time.Second, r.lab.Router, name, args...)
	if err != nil {
		r.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// loadFW4 loads the fw4 ruleset in the router, as "fw4 reload" does, with
// dpf's chain-post/forward snippet included or not.
func (r *router) loadFW4(snippet string) {
	r.t.Helper()
	var inc []string
	if snippet != "" {
		inc = append(inc, snippet)
	}
	path := filepath.Join(r.dir, "fw4.nft")
	if err := os.WriteFile(path, []byte(fw4Ruleset(inc...)), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.routerCmd("nft", "-f", path)
}

// freeze stops dpfd (SIGSTOP) until the returned function or the end of
// the test: whatever happens meanwhile, dpfd does nothing about it.
func (r *router) freeze() (thaw func()) {
	r.t.Helper()
	pid := r.cmd.Process.Pid // "ip netns exec" execs dpfd: the same process
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		r.t.Fatal(err)
	}
	thawed := false
	thaw = func() {
		if !thawed {
			thawed = true
			syscall.Kill(pid, syscall.SIGCONT)
		}
	}
	r.t.Cleanup(thaw)
	return thaw
}

// TestFW4SnippetKeepsPinholes: under an fw4 ruleset, a pinhole's traffic is
// rejected by fw4's forward chain (dpfd's accept only ends dpfd's own
// chain) unless files/usr/share/nftables.d/chain-post/forward/30-dpf.nft is
// included; with it, pinholes work and keep working across "fw4 reload"
// and a firewall restart (table deleted and loaded again) while dpfd is
// frozen, since fw4 never touches table ip dpf.
func TestFW4SnippetKeepsPinholes(t *testing.T) {
	needTools(t)
	snippet := repoFile(t, "files/usr/share/nftables.d/chain-post/forward/30-dpf.nft")
	r := newRouter(t, "nftables", 1)
	// OpenWrt's boot order: the firewall (START=19) before dpf (START=95).
	r.loadFW4("")
	r.start()
	r.echoServers(0, 8080)
	text, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	uext, _, err := r.natpmpc(0, "-a", "8080", "8080", "udp", "3600")
	if err != nil {
		t.Fatal(err)
	}

	// Without the snippet: dpfd's table DNATs and accepts, fw4 rejects.
	if !strings.Contains(r.routerCmd("nft", "list", "table", "ip", "dpf"), "8080") {
		t.Fatal("the pinhole is not in table ip dpf")
	}
	r.mustNotReach("tcp", text)
	r.mustNotReach("udp", uext)

	// The package installs the snippet and fw4 reloads.
	r.loadFW4(snippet)
	if !strings.Contains(r.routerCmd("nft", "list", "chain", "inet", "fw4", "forward"), "ct status dnat accept") {
		t.Fatal("the snippet's rule is not in fw4's forward chain")
	}
	r.mustReach("tcp", text)
	r.mustReach("udp", uext)

	thaw := r.freeze()
	// fw4 reload: flush table inet fw4 and rebuild it, in one transaction.
	r.loadFW4(snippet)
	r.mustReach("tcp", text)
	r.mustReach("udp", uext)
	// Firewall restart: "fw4 flush" deletes the table, "fw4 start" loads it.
	r.routerCmd("nft", "delete", "table", "inet", "fw4")
	r.loadFW4(snippet)
	r.mustReach("tcp", text)
	r.mustReach("udp", uext)
	// The package is removed (snippet gone) and fw4 reloads: rejected again,
	// although dpfd's table still holds the pinhole.
	r.loadFW4("")
	r.mustNotReach("tcp", text)
	r.mustNotReach("udp", uext)
	thaw()
}

// fw3Rules is what fw3 installs for the default configuration (the parts
// that matter here, with fw3's chain names and "!fw3" tags), as
// iptables-restore --noflush input: declaring a chain creates or flushes it,
// so loading it after "iptables -F" is fw3 populating its tables again.
const fw3Rules = `*nat
:PREROUTING ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:prerouting_rule - [0:0]
:postrouting_rule - [0:0]
:zone_lan_prerouting - [0:0]
:zone_wan_prerouting - [0:0]
:zone_wan_postrouting - [0:0]
-A PREROUTING -m comment --comment "!fw3: Custom prerouting rule chain" -j prerouting_rule
-A PREROUTING -i br-lan -m comment --comment "!fw3" -j zone_lan_prerouting
-A PREROUTING -i wan0 -m comment --comment "!fw3" -j zone_wan_prerouting
-A POSTROUTING -m comment --comment "!fw3: Custom postrouting rule chain" -j postrouting_rule
-A POSTROUTING -o wan0 -m comment --comment "!fw3" -j zone_wan_postrouting
-A zone_wan_postrouting -m comment --comment "!fw3" -j MASQUERADE
COMMIT
*filter
:INPUT DROP [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:forwarding_rule - [0:0]
:reject - [0:0]
:zone_lan_input - [0:0]
:zone_lan_forward - [0:0]
:zone_lan_src_ACCEPT - [0:0]
:zone_lan_dest_ACCEPT - [0:0]
:zone_wan_input - [0:0]
:zone_wan_forward - [0:0]
:zone_wan_src_REJECT - [0:0]
:zone_wan_dest_ACCEPT - [0:0]
:zone_wan_dest_DROP - [0:0]
-A INPUT -i lo -m comment --comment "!fw3" -j ACCEPT
-A INPUT -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "!fw3" -j ACCEPT
-A INPUT -i br-lan -m comment --comment "!fw3" -j zone_lan_input
-A INPUT -i wan0 -m comment --comment "!fw3" -j zone_wan_input
-A FORWARD -m comment --comment "!fw3: Custom forwarding rule chain" -j forwarding_rule
-A FORWARD -m conntrack --ctstate RELATED,ESTABLISHED -m comment --comment "!fw3" -j ACCEPT
-A FORWARD -i br-lan -m comment --comment "!fw3" -j zone_lan_forward
-A FORWARD -i wan0 -m comment --comment "!fw3" -j zone_wan_forward
-A FORWARD -m comment --comment "!fw3" -j reject
-A reject -p tcp -m comment --comment "!fw3" -j REJECT --reject-with tcp-reset
-A reject -m comment --comment "!fw3" -j REJECT --reject-with icmp-port-unreachable
-A zone_lan_input -m comment --comment "!fw3" -j zone_lan_src_ACCEPT
-A zone_lan_src_ACCEPT -i br-lan -m conntrack --ctstate NEW,UNTRACKED -m comment --comment "!fw3" -j ACCEPT
-A zone_lan_forward -m comment --comment "!fw3: Zone lan to wan forwarding policy" -j zone_wan_dest_ACCEPT
-A zone_lan_forward -m comment --comment "!fw3" -j zone_lan_dest_ACCEPT
-A zone_lan_dest_ACCEPT -o br-lan -m comment --comment "!fw3" -j ACCEPT
-A zone_wan_dest_ACCEPT -o wan0 -m comment --comment "!fw3" -j ACCEPT
-A zone_wan_input -p udp -m udp --dport 68 -m comment --comment "!fw3: Allow-DHCP-Renew" -j ACCEPT
-A zone_wan_input -m comment --comment "!fw3" -j zone_wan_src_REJECT
-A zone_wan_src_REJECT -i wan0 -m comment --comment "!fw3" -j reject
-A zone_wan_forward -p esp -m comment --comment "!fw3: Allow-IPSec-ESP" -j zone_lan_dest_ACCEPT
-A zone_wan_forward -m comment --comment "!fw3" -j zone_wan_dest_DROP
-A zone_wan_dest_DROP -o wan0 -m comment --comment "!fw3" -j DROP
COMMIT
`

// loadFW3 has the router's iptables populated as fw3 does.
func (r *router) loadFW3() {
	r.t.Helper()
	path := filepath.Join(r.dir, "fw3.rules")
	if err := os.WriteFile(path, []byte(fw3Rules), 0o600); err != nil {
		r.t.Fatal(err)
	}
	r.routerCmd("iptables-restore", "--noflush", path)
}

// runFW3Include runs files/usr/share/dpf/firewall.include the way fw3 runs
// a script include: sourced by sh -c after a config() that refuses UCI.
// It must say nothing and exit 0.
func (r *router) runFW3Include(include string) {
	r.t.Helper()
	script := `config() { echo "You cannot use UCI in firewall includes!" >&2; exit 1; }; . '` + include + `'`
	if out, errOut := r.runHook(r.hookEnv(), "", "sh", "-c", script); out != "" || errOut != "" {
		r.t.Fatalf("firewall.include printed %q %q", out, errOut)
	}
}

// runHotplug runs files/etc/hotplug.d/iface/95-dpf as hotplug-call does
// (sourced in a subshell) for an event of network iface on device dev,
// with a uci on PATH that answers for dpf's wan_interface ('wan', a network
// name as on OpenWrt).
func (r *router) runHotplug(hotplug, action, iface, dev string) {
	r.t.Helper()
	bin := filepath.Join(r.dir, "fakebin")
	fake := "#!/bin/sh\ncase \"$*\" in\n*dpf.@dpf\\[0\\].wan_interface*) echo wan ;;\n*) exit 1 ;;\nesac\n"
	if err := os.MkdirAll(bin, 0o755); err != nil {
		r.t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(bin, "uci"), []byte(fake), 0o755); err != nil {
		r.t.Fatal(err)
	}
	env := r.hookEnv("ACTION="+action, "INTERFACE="+iface, "DEVICE="+dev)
	env[0] = "PATH=" + bin + ":/usr/sbin:/usr/bin:/sbin:/bin"
	if out, errOut := r.runHook(env, "", "sh", "-c", "( . '"+hotplug+"' )"); out != "" || errOut != "" {
		r.t.Fatalf("95-dpf printed %q %q", out, errOut)
	}
}

// flushFW3 is a firewall reload under fw3 at its most destructive: every
// rule of the filter and nat tables flushed (dpfd's jumps and pinholes
// included; with deleteChains, "fw3 flush", every chain deleted too), then
// fw3's rules loaded again.
func (r *router) flushFW3(deleteChains bool) {
	r.t.Helper()
	for _, table := range []string{"filter", "nat"} {
		r.routerCmd("iptables", "-t", table, "-F")
		if deleteChains {
			r.routerCmd("iptables", "-t", table, "-X")
		}
	}
	r.loadFW3()
}

// TestFirewall3IncludeRestoresPinholes: under an fw3 ruleset (forward
// policy rejecting), dpfd's iptables pinholes work; a fw3 reload or
// restart that flushes them breaks them, and the shipped firewall include
// (run by fw3 after it rebuilt its rules) and the WAN hotplug script (fw3
// reloads on WAN ifup) bring them back. Both are quiet no-ops when dpfd is
// not running or the event is not the WAN's.
func TestFirewall3IncludeRestoresPinholes(t *testing.T) {
	needTools(t)
	include := repoFile(t, "files/usr/share/dpf/firewall.include")
	hotplug := repoFile(t, "files/etc/hotplug.d/iface/95-dpf")
	r := newRouter(t, "iptables", 1)
	r.loadFW3()
	r.start()
	r.echoServers(0, 8080)
	text, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	uext, _, err := r.natpmpc(0, "-a", "8080", "8080", "udp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	r.mustReach("tcp", text)
	r.mustReach("udp", uext)

	// dpfd repairs its rules by itself within a second or two (see
	// TestSelfHealingFirewall), so it is stopped while the flush is shown
	// to break the pinholes; the include then asks it to reconcile at once.
	for _, deleteChains := range []bool{false, true} {
		thaw := r.freeze()
		r.flushFW3(deleteChains)
		r.mustNotReach("tcp", text)
		thaw()
		r.runFW3Include(include)
		r.mustReach("tcp", text)
		r.mustReach("udp", uext)
	}
	// Reconciling twice changes nothing (one jump each, first).
	r.runFW3Include(include)
	if out := r.routerCmd("iptables", "-S", "FORWARD"); strings.Count(out, "-j DPF-FORWARD") != 1 ||
		!strings.HasPrefix(strings.SplitN(out, "\n", 3)[1], "-A FORWARD -j DPF-FORWARD") {
		t.Fatalf("FORWARD after two reconciles:\n%s", out)
	}
	r.mustReach("tcp", text)

	// WAN ifup: fw3 reloads (flushing), then 95-dpf reconciles. An event
	// of another network does nothing.
	thaw := r.freeze()
	r.flushFW3(false)
	r.runHotplug(hotplug, "ifup", "lan", "br-lan")
	r.mustNotReach("tcp", text)
	thaw()
	r.runHotplug(hotplug, "ifup", "wan", "wan0")
	r.mustReach("tcp", text)
	r.mustReach("udp", uext)

	// dpfd stopped: both hooks stay quiet and succeed.
	r.kill(syscall.SIGTERM)
	r.runFW3Include(include)
	r.runHotplug(hotplug, "ifup", "wan", "wan0")
}
