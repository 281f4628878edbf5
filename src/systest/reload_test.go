package systest

// Reload with the real dpfd in the lab: every option of the configuration
// (config.Options, the table the parser reads from) is either applied by
// "dpfd reload", shown by what dpfd then does, or answered with "restart
// needed" naming it, with nothing of the file applied.

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
	"github.com/dpf-router/dpf/src/store"
)

// LAN hosts of the walk: 0 may use key alice, 1 is any host, 2 and 3 are
// used by the rate limit cases only (their buckets are their own).
const (
	hostAlice = 0
	hostOther = 1
	hostRate  = 2
	hostBurst = 3
)

// reloadBase is the configuration the walk starts from and returns to
// after each option; %[1]s is the router's directory.
const reloadBase = `config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend 'nftables'
	option db '%[1]s/leases.db'
	option socket '%[1]s/dpfd.sock'
	option min_lifetime '2'
	option max_lifetime '3600'
	option max_per_host '6'
	option max_leases '100'
	option rate_limit '20'
	option rate_burst '40'
	option checkpoint_interval '300'
	option log_level 'info'
	option dbus '0'
	option auth 'optional'

config key 'alice'
	option secret '%[2]s'
	list address '%[3]s'

config rule 'keyed'
	option action 'allow'
	option auth 'alice'
	list int_addr 'lan'
	option int_ports '1-65535'
	option ext_ports '1-65535'

config rule 'nolow'
	option action 'deny'
	option int_ports '1-1023'

config rule 'plain'
	option action 'allow'
	list int_addr 'lan'
	option int_ports '1024-65535'
	option ext_ports '1024-65535'
	option proto 'any'
	option third_party '0'
`

// reloadWalk is a running dpfd and what the cases use.
type reloadWalk struct {
	r      *router
	base   string
	client string // a file naming the socket dpfd listens on, for dpfd reload
	q      []*requester
	nonce  byte
}

// reloadCase is what one option's reload does. restart: dpfd must answer
// that it needs a restart (and apply nothing); otherwise after shows, by
// what dpfd does, that the reload applied the change (before, if set,
// shows what it did under the base configuration).
type reloadCase struct {
	restart bool
	change  func(t *testing.T, base string) string
	before  func(t *testing.T, w *reloadWalk)
	after   func(t *testing.T, w *reloadWalk)
}

// TestReloadEveryOption walks config.Options(): for each option a change
// of it alone is reloaded with "dpfd reload", and the test shows that dpfd
// applied it (by behaviour: a host throttled at the new rate, a lifetime
// granted, a port refused, a key refused, ...) or that dpfd answered
// "restart needed: OPTION" with exit 4 and applied none of the file. An
// option without a case here fails, as does a case whose decision differs
// from the option table's.
func TestReloadEveryOption(t *testing.T) {
	needTools(t)
	w := newReloadWalk(t)
	cases := reloadCases()
	for _, o := range config.Options() {
		id := o.Section + "." + o.Name
		c, ok := cases[id]
		if !ok {
			t.Errorf("option %s: no reload case; add one showing that a reload applies it, or that dpfd answers restart needed", id)
			continue
		}
		delete(cases, id)
		if c.restart != (o.Apply == config.ApplyRestart) {
			t.Errorf("option %s: the option table says %v, this test expects restart %v", id, o.Apply, c.restart)
			continue
		}
		t.Run(id, func(t *testing.T) { w.run(t, o.Name, c) })
	}
	for id := range cases {
		t.Errorf("a reload case for %s, which is not an option of config.Options()", id)
	}
}

func newReloadWalk(t *testing.T) *reloadWalk {
	r := newRouter(t, "nftables", 4)
	w := &reloadWalk{r: r, base: fmt.Sprintf(reloadBase, r.dir, pcp.FormatAuthKey(aliceKey), lab.LANHost(hostAlice)),
		client: filepath.Join(r.dir, "client.conf")}
	// dpfd reload finds the daemon through the socket option of its -c
	// file: the base file's, also when a case changes the socket.
	if err := os.WriteFile(w.client, []byte(w.base), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(r.cfgPath, []byte(w.base), 0o600); err != nil {
		t.Fatal(err)
	}
	r.start()
	for n := range 2 {
		w.q = append(w.q, newRequester(t, r.lab.LAN[n], lab.LANHost(n)))
	}
	return w
}

// run reloads the change of one option and checks what dpfd did, then
// returns to the base configuration.
func (w *reloadWalk) run(t *testing.T, name string, c reloadCase) {
	w.r.t = t // failures of router helpers belong to the subtest
	defer w.restore(t)
	if c.before != nil {
		c.before(t, w)
		w.clear(t)
	}
	text := c.change(t, w.base)
	if text == w.base {
		t.Fatal("the case changes nothing")
	}
	if !c.restart {
		if out, code := w.reload(t, text); code != 0 || out != "ok\n" {
			t.Fatalf("dpfd reload: exit %d, %q; want 0, \"ok\"", code, out)
		}
		c.after(t, w)
		return
	}
	// A live change rides along; it must not be applied either.
	text = addMain(t, text, "option min_lifetime '300'")
	before := w.r.status()
	out, code := w.reload(t, text)
	if code != 4 || out != "restart needed: "+name+"\n" {
		t.Fatalf("dpfd reload: exit %d, %q; want 4, \"restart needed: %s\"", code, out, name)
	}
	if resp := w.natpmp(t, hostOther, natpmp.OpMapTCP, 9050, 10); resp.Result != natpmp.ResultSuccess || resp.Lifetime != 10 {
		t.Errorf("after a reload that needs a restart: granted %+v; min_lifetime '300' was applied anyway", resp)
	}
	after := w.r.status()
	if after.Backend != before.Backend || after.DB != before.DB || after.WANInterface != before.WANInterface ||
		strings.Join(after.LANInterfaces, " ") != strings.Join(before.LANInterfaces, " ") {
		t.Errorf("status changed by a reload that needs a restart: %+v, was %+v", after, before)
	}
}

// reload writes text as dpfd's configuration and runs dpfd reload; it
// returns its stdout and exit code.
func (w *reloadWalk) reload(t *testing.T, text string) (string, int) {
	t.Helper()
	if err := os.WriteFile(w.r.cfgPath, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", w.r.lab.Router, dpfdBin, "reload", "-c", w.client)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		if stderr.Len() > 0 {
			t.Logf("dpfd reload: %s", stderr.String())
		}
		return stdout.String(), cmd.ProcessState.ExitCode()
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		t.Fatal("dpfd reload did not return within 30 s")
	}
	return "", -1
}

// restore returns to the base configuration and deletes every lease.
func (w *reloadWalk) restore(t *testing.T) {
	t.Helper()
	if out, code := w.reload(t, w.base); code != 0 {
		t.Fatalf("reload of the base configuration: exit %d, %q", code, out)
	}
	w.clear(t)
}

// clear deletes every lease.
func (w *reloadWalk) clear(t *testing.T) {
	t.Helper()
	for n := range 4 {
		if out, err := w.r.dpfd("delete", "--client", lab.LANHost(n).String()); err != nil {
			t.Fatalf("dpfd delete --client: %v\n%s", err, out)
		}
	}
}

// natpmp asks for a NAT-PMP mapping of internal port in (suggesting the
// same external port) from LAN host n.
func (w *reloadWalk) natpmp(t *testing.T, n int, op uint8, in uint16, life uint32) natpmp.Response {
	t.Helper()
	resp, _, err := w.q[n].natpmpMap(op, in, in, life)
	if err != nil {
		t.Fatalf("NAT-PMP from LAN host %d: %v", n, err)
	}
	return resp
}

// pcp sends a PCP TCP MAP request from LAN host n for internal port in,
// suggesting the same external port, signed with key when not nil, and
// returns the answer.
func (w *reloadWalk) pcp(t *testing.T, n int, in uint16, key []byte, opts ...pcp.Option) pcp.Response {
	t.Helper()
	w.nonce++
	req := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: 600, ClientAddr: lab.LANHost(n), Options: opts,
		Map: pcp.MapData{Protocol: 6, InternalPort: in, ExternalPort: in, ExternalAddr: netip.IPv4Unspecified()}}
	req.Map.Nonce[0], req.Map.Nonce[1] = w.nonce, byte(n)
	b := req.AppendTo(nil)
	if key != nil {
		b = signReq(t, b, key)
	}
	reply := w.r.rawPCP(n, lab.LANHost(n), b)
	resp, err := pcp.ParseResponse(reply)
	if err != nil {
		t.Fatalf("PCP answer %x: %v", reply, err)
	}
	return resp
}

// wantNATPMP checks a NAT-PMP answer's result.
func wantNATPMP(t *testing.T, what string, resp natpmp.Response, result uint16) {
	t.Helper()
	if resp.Result != result {
		t.Errorf("%s: result %d, want %d (%+v)", what, resp.Result, result, resp)
	}
}

// wantPCP checks a PCP answer's result.
func wantPCP(t *testing.T, what string, resp pcp.Response, result uint8) {
	t.Helper()
	if resp.Result != result {
		t.Errorf("%s: PCP result %d, want %d (%+v)", what, resp.Result, result, resp)
	}
}

// blast sends count NAT-PMP address requests from LAN host n at once and
// returns how many were answered: it reads until count answers came or
// none came for a second (at most 10 s in all).
func (w *reloadWalk) blast(t *testing.T, n, count int) int {
	t.Helper()
	answered := 0
	err := lab.In(w.r.lab.LAN[n], func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{IP: lab.LANHost(n).AsSlice()},
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(lab.RouterLAN, natpmp.ServerPort)))
		if err != nil {
			return err
		}
		defer c.Close()
		for range count {
			if _, err := c.Write([]byte{0, 0}); err != nil {
				return err
			}
		}
		end := time.Now().Add(10 * time.Second)
		buf := make([]byte, 64)
		for answered < count {
			deadline := time.Now().Add(time.Second)
			if end.Before(deadline) {
				deadline = end
			}
			c.SetReadDeadline(deadline)
			if _, err := c.Read(buf); err != nil {
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					return nil
				}
				return err
			}
			answered++
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return answered
}

// logWait waits (at most 10 s) until dpfd's log after mark holds s.
func (w *reloadWalk) logWait(mark int, s string) bool {
	for range 100 {
		if strings.Contains(w.r.logBuf.String()[mark:], s) {
			return true
		}
		time.Sleep(100 * time.Millisecond)
	}
	return false
}

// addMain adds line to the main section (after its last option).
func addMain(t *testing.T, text, line string) string {
	return replaceOnce(t, text, "\toption auth 'optional'\n", "\toption auth 'optional'\n\t"+line+"\n")
}

func replaceOnce(t *testing.T, text, old, new string) string {
	t.Helper()
	if strings.Count(text, old) != 1 {
		t.Fatalf("%q is not in the configuration exactly once", old)
	}
	return strings.Replace(text, old, new, 1)
}

// inSection replaces old by new within config section name.
func inSection(t *testing.T, text, name, old, new string) string {
	t.Helper()
	head := "'" + name + "'\n"
	i := strings.Index(text, head)
	if i < 0 {
		t.Fatalf("no section %s", name)
	}
	i += len(head)
	end := strings.Index(text[i:], "\nconfig ")
	if end < 0 {
		end = len(text) - i
	}
	return text[:i] + replaceOnce(t, text[i:i+end], old, new) + text[i+end:]
}

// swap is a change that replaces old by new.
func swap(old, new string) func(*testing.T, string) string {
	return func(t *testing.T, b string) string { return replaceOnce(t, b, old, new) }
}

// inRule is a change that replaces old by new in section name.
func inRule(name, old, new string) func(*testing.T, string) string {
	return func(t *testing.T, b string) string { return inSection(t, b, name, old, new) }
}

// withMain is a change that adds line to the main section.
func withMain(line string) func(*testing.T, string) string {
	return func(t *testing.T, b string) string { return addMain(t, b, line) }
}

// lifetimeCase is the case of option min_lifetime or max_lifetime, changed
// from one value to another: a mapping of port asking ask seconds is
// granted ask before and want after.
func lifetimeCase(option, from, to string, port uint16, ask, want uint32) reloadCase {
	grant := func(t *testing.T, w *reloadWalk, want uint32) {
		t.Helper()
		if resp := w.natpmp(t, hostOther, natpmp.OpMapTCP, port, ask); resp.Result != 0 || resp.Lifetime != want {
			t.Errorf("asked %d s (%s %s, then %s): granted %+v, want %d s", ask, option, from, to, resp, want)
		}
	}
	return reloadCase{
		change: swap("option "+option+" '"+from+"'", "option "+option+" '"+to+"'"),
		before: func(t *testing.T, w *reloadWalk) { grant(t, w, ask) },
		after:  func(t *testing.T, w *reloadWalk) { grant(t, w, want) },
	}
}

// reloadCases is a case per option, by "section.name".
func reloadCases() map[string]reloadCase {
	restart := func(old, new string) reloadCase { return reloadCase{restart: true, change: swap(old, new)} }
	return map[string]reloadCase{
		// Restart needed: the sockets, the firewall, the store, the
		// control socket and the bus are set up once.
		"dpf.enabled":       restart("\toption dbus '0'\n", "\toption dbus '0'\n\toption enabled '0'\n"),
		"dpf.lan_interface": restart("\tlist lan_interface 'br-lan'\n", "\tlist lan_interface 'br-lan'\n\tlist lan_interface 'br-guest'\n"),
		"dpf.wan_interface": restart("option wan_interface 'wan0'", "option wan_interface 'wan1'"),
		"dpf.backend":       restart("option backend 'nftables'", "option backend 'iptables'"),
		"dpf.db":            restart("/leases.db'", "/other.db'"),
		"dpf.socket":        restart("/dpfd.sock'", "/other.sock'"),
		"dpf.dbus":          restart("option dbus '0'", "option dbus 'auto'"),
		"dpf.dbus_address":  restart("\toption dbus '0'\n", "\toption dbus '0'\n\toption dbus_address 'unix:path=/nonexistent/bus'\n"),

		"dpf.external_address": {
			change: withMain("option external_address '192.0.2.77'"),
			before: func(t *testing.T, w *reloadWalk) {
				if a := w.r.publicAddress(t).ExternalAddr; a != lab.RouterWAN {
					t.Errorf("external address %v before, want the WAN's %v", a, lab.RouterWAN)
				}
			},
			after: func(t *testing.T, w *reloadWalk) {
				if a := w.r.publicAddress(t).ExternalAddr; a != netip.MustParseAddr("192.0.2.77") {
					t.Errorf("external address %v after the reload, want 192.0.2.77", a)
				}
			},
		},
		"dpf.min_lifetime": lifetimeCase("min_lifetime", "2", "30", 9100, 10, 30),
		"dpf.max_lifetime": lifetimeCase("max_lifetime", "3600", "100", 9101, 3000, 100),
		"dpf.max_per_host": {
			change: swap("option max_per_host '6'", "option max_per_host '1'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "first mapping", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9102, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "second mapping of the host with max_per_host 1", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9103, 600), natpmp.ResultOutOfResources)
				wantNATPMP(t, "another host's", w.natpmp(t, hostAlice, natpmp.OpMapTCP, 9104, 600), natpmp.ResultSuccess)
			},
		},
		"dpf.max_leases": {
			change: swap("option max_leases '100'", "option max_leases '1'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "first mapping", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9105, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "another host's with max_leases 1", w.natpmp(t, hostAlice, natpmp.OpMapTCP, 9106, 600), natpmp.ResultOutOfResources)
			},
		},
		"dpf.rate_limit": {
			change: swap("option rate_limit '20'", "option rate_limit '0.001'"),
			after: func(t *testing.T, w *reloadWalk) {
				// Empty the host's bucket (40), then rest: at 20 a second
				// it would hold 20 again after a second; at 0.001, none.
				if got := w.blast(t, hostRate, 60); got > 45 {
					t.Fatalf("%d of 60 answered with rate_burst 40", got)
				}
				time.Sleep(1500 * time.Millisecond)
				if got := w.blast(t, hostRate, 30); got != 0 {
					t.Errorf("%d of 30 answered 1.5 s after the bucket emptied at rate_limit 0.001, want 0", got)
				}
			},
		},
		"dpf.rate_burst": {
			// rate_limit too, so that no token comes back while counting.
			change: func(t *testing.T, b string) string {
				b = replaceOnce(t, b, "option rate_burst '40'", "option rate_burst '3'")
				return replaceOnce(t, b, "option rate_limit '20'", "option rate_limit '0.001'")
			},
			after: func(t *testing.T, w *reloadWalk) {
				if got := w.blast(t, hostBurst, 20); got != 3 {
					t.Errorf("%d of a burst of 20 answered with rate_burst 3, want 3", got)
				}
			},
		},
		"dpf.reserved_ports": {
			change: withMain("option reserved_ports '9200/tcp'"),
			before: func(t *testing.T, w *reloadWalk) {
				if resp := w.natpmp(t, hostOther, natpmp.OpMapTCP, 9200, 600); resp.ExternalPort != 9200 {
					t.Errorf("port 9200 before: granted %+v", resp)
				}
			},
			after: func(t *testing.T, w *reloadWalk) {
				if resp := w.natpmp(t, hostOther, natpmp.OpMapTCP, 9200, 600); resp.Result != 0 || resp.ExternalPort == 9200 {
					t.Errorf("port 9200 reserved: granted %+v, want another port", resp)
				}
			},
		},
		"dpf.checkpoint_interval": {
			// log_level debug too, to see the checkpoint happen.
			change: func(t *testing.T, b string) string {
				b = replaceOnce(t, b, "option log_level 'info'", "option log_level 'debug'")
				return replaceOnce(t, b, "option checkpoint_interval '300'", "option checkpoint_interval '1'")
			},
			after: func(t *testing.T, w *reloadWalk) { w.checkpointCase(t) },
		},
		"dpf.log_level": {
			change: swap("option log_level 'info'", "option log_level 'debug'"),
			before: func(t *testing.T, w *reloadWalk) {
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9400, 600)
				mark := len(w.r.logBuf.String())
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9400, 600)
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9401, 600) // logged at info: the renewal's line would be before it
				if !w.logWait(mark, "ext_port=9401") || strings.Contains(w.r.logBuf.String()[mark:], "mapping renewed") {
					t.Errorf("at log_level info: %s", w.r.logBuf.String()[mark:])
				}
			},
			after: func(t *testing.T, w *reloadWalk) {
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9400, 600)
				mark := len(w.r.logBuf.String())
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9400, 600)
				if !w.logWait(mark, "mapping renewed") {
					t.Errorf("no debug line for a renewal at log_level debug: %s", w.r.logBuf.String()[mark:])
				}
				// And back: the debug lines stop.
				if out, code := w.reload(t, w.base); code != 0 {
					t.Fatalf("reload to log_level info: %d %q", code, out)
				}
				mark = len(w.r.logBuf.String())
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9400, 600)
				w.natpmp(t, hostOther, natpmp.OpMapTCP, 9402, 600)
				if !w.logWait(mark, "ext_port=9402") || strings.Contains(w.r.logBuf.String()[mark:], "mapping renewed") {
					t.Errorf("back at log_level info: %s", w.r.logBuf.String()[mark:])
				}
			},
		},
		"dpf.auth": {
			change: swap("option auth 'optional'", "option auth 'required'"),
			before: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "NAT-PMP with auth optional", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9500, 600), natpmp.ResultSuccess)
			},
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "NAT-PMP with auth required", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9501, 600), natpmp.ResultNotAuthorized)
				wantPCP(t, "signed PCP with auth required", w.pcp(t, hostAlice, 9502, aliceKey), pcp.ResultSuccess)
			},
		},

		// Rules and keys are replaced as a whole on reload.
		"rule.action": {
			change: inRule("plain", "option action 'allow'", "option action 'deny'"),
			before: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "allowed", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9600, 600), natpmp.ResultSuccess)
			},
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "the rule denies", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9601, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.int_addr": {
			change: inRule("plain", "list int_addr 'lan'", "list int_addr '"+lab.LANHost(hostOther).String()+"'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "the rule's address", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9602, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "another address", w.natpmp(t, hostAlice, natpmp.OpMapTCP, 9603, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.client": {
			change: inRule("plain", "option proto 'any'", "option proto 'any'\n\toption client '"+lab.LANHost(hostOther).String()+"'"),
			before: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "any client", w.natpmp(t, hostAlice, natpmp.OpMapTCP, 9604, 600), natpmp.ResultSuccess)
			},
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "the rule's client", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9605, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "another client", w.natpmp(t, hostAlice, natpmp.OpMapTCP, 9606, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.int_ports": {
			change: inRule("plain", "option int_ports '1024-65535'", "option int_ports '9000-9010'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "inside int_ports", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9005, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "outside int_ports", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9700, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.ext_ports": {
			change: inRule("plain", "option ext_ports '1024-65535'", "option ext_ports '20000-20010'"),
			after: func(t *testing.T, w *reloadWalk) {
				resp := w.natpmp(t, hostOther, natpmp.OpMapTCP, 9701, 600)
				if resp.Result != 0 || resp.ExternalPort < 20000 || resp.ExternalPort > 20010 {
					t.Errorf("ext_ports 20000-20010: granted %+v", resp)
				}
			},
		},
		"rule.proto": {
			change: inRule("plain", "option proto 'any'", "option proto 'udp'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "UDP", w.natpmp(t, hostOther, natpmp.OpMapUDP, 9702, 600), natpmp.ResultSuccess)
				wantNATPMP(t, "TCP with proto udp", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9703, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.third_party": {
			change: inRule("plain", "option third_party '0'", "option third_party '1'"),
			before: func(t *testing.T, w *reloadWalk) {
				wantPCP(t, "THIRD_PARTY with third_party 0", w.pcp(t, hostAlice, 9704, nil, pcp.ThirdPartyOption(lab.LANHost(hostOther))), pcp.ResultNotAuthorized)
			},
			after: func(t *testing.T, w *reloadWalk) {
				wantPCP(t, "THIRD_PARTY with third_party 1", w.pcp(t, hostAlice, 9704, nil, pcp.ThirdPartyOption(lab.LANHost(hostOther))), pcp.ResultSuccess)
			},
		},
		"rule.auth": {
			change: inRule("plain", "option proto 'any'", "option proto 'any'\n\toption auth 'alice'"),
			after: func(t *testing.T, w *reloadWalk) {
				wantNATPMP(t, "unsigned, the rule needs key alice", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9705, 600), natpmp.ResultNotAuthorized)
			},
		},
		"rule.name": {
			change: inRule("nolow", "option action 'deny'", "option action 'deny'\n\toption name 'renamed'"),
			before: func(t *testing.T, w *reloadWalk) { w.refusedBy(t, `\"nolow\"`) },
			after:  func(t *testing.T, w *reloadWalk) { w.refusedBy(t, `\"renamed\"`) },
		},
		"key.name": {
			change: func(t *testing.T, b string) string {
				b = inSection(t, b, "alice", "list address", "option name 'carol'\n\tlist address")
				return inSection(t, b, "keyed", "option auth 'alice'", "option auth 'carol'")
			},
			before: func(t *testing.T, w *reloadWalk) { w.keyedLease(t, 9800, "alice") },
			after:  func(t *testing.T, w *reloadWalk) { w.keyedLease(t, 9800, "carol") },
		},
		"key.secret": {
			change: inRule("alice", pcp.FormatAuthKey(aliceKey), pcp.FormatAuthKey(bobKey)),
			after: func(t *testing.T, w *reloadWalk) {
				wantPCP(t, "signed with the old secret", w.pcp(t, hostAlice, 9801, aliceKey), pcp.ResultNotAuthorized)
				wantPCP(t, "signed with the new secret", w.pcp(t, hostAlice, 9802, bobKey), pcp.ResultSuccess)
			},
		},
		"key.address": {
			change: inRule("alice", "list address '"+lab.LANHost(hostAlice).String()+"'", "list address '"+lab.LANHost(hostOther).String()+"'"),
			before: func(t *testing.T, w *reloadWalk) {
				wantPCP(t, "key from its address", w.pcp(t, hostAlice, 9803, aliceKey), pcp.ResultSuccess)
			},
			after: func(t *testing.T, w *reloadWalk) {
				wantPCP(t, "key from its old address", w.pcp(t, hostAlice, 9804, aliceKey), pcp.ResultNotAuthorized)
				wantPCP(t, "key from its new address", w.pcp(t, hostOther, 9805, aliceKey), pcp.ResultSuccess)
			},
		},
	}
}

// refusedBy asks for a port the rule nolow denies and checks that dpfd's
// log names the rule by name (quoted as in the log).
func (w *reloadWalk) refusedBy(t *testing.T, name string) {
	t.Helper()
	mark := len(w.r.logBuf.String())
	wantNATPMP(t, "port 80, denied by rule nolow", w.natpmp(t, hostOther, natpmp.OpMapTCP, 80, 600), natpmp.ResultNotAuthorized)
	if !w.logWait(mark, "denied by rule 2 "+name) {
		t.Errorf("the refusal does not name rule 2 %s: %s", name, w.r.logBuf.String()[mark:])
	}
}

// keyedLease maps port with key alice's secret and checks the lease names
// the key keyName.
func (w *reloadWalk) keyedLease(t *testing.T, port uint16, keyName string) {
	t.Helper()
	wantPCP(t, "signed", w.pcp(t, hostAlice, port, aliceKey), pcp.ResultSuccess)
	l, ok := w.r.lease("tcp", port)
	if !ok || l.Auth != keyName {
		t.Errorf("lease of port %d: %+v, want one made with key %s", port, l, keyName)
	}
}

// checkpointCase: with checkpoint_interval 1 a renewal's expiry reaches
// the store within a checkpoint (at the default 300 it would not for five
// minutes): dpfd is killed (SIGKILL) once the debug log says a checkpoint
// was written after the renewal, and the store holds the renewed expiry.
// dpfd is started again afterwards.
func (w *reloadWalk) checkpointCase(t *testing.T) {
	r := w.r
	wantNATPMP(t, "map", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9300, 3600), natpmp.ResultSuccess)
	created, ok := r.lease("tcp", 9300)
	if !ok {
		t.Fatal("no lease")
	}
	time.Sleep(2 * time.Second) // so that the renewal moves the expiry
	mark := len(r.logBuf.String())
	wantNATPMP(t, "renewal", w.natpmp(t, hostOther, natpmp.OpMapTCP, 9300, 3600), natpmp.ResultSuccess)
	renewed, _ := r.lease("tcp", 9300)
	if !renewed.Expires.After(created.Expires) {
		t.Fatalf("the renewal did not move the expiry: %v then %v", created.Expires, renewed.Expires)
	}
	if !w.logWait(mark, "checkpoint written") {
		t.Fatalf("no checkpoint within 10 s at checkpoint_interval 1: %s", r.logBuf.String()[mark:])
	}
	crashKill(t, r)
	defer r.start()
	st, err := store.Open(filepath.Join(r.dir, "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	ls, _, err := st.Load()
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range ls {
		if l.ExternalPort == 9300 {
			if got := l.Expires.UTC().Truncate(time.Second); !got.Equal(renewed.Expires) {
				t.Errorf("stored expiry %v, want the renewed %v (created %v)", got, renewed.Expires, created.Expires)
			}
			return
		}
	}
	t.Errorf("lease 9300 not in the store: %v", ls)
}

// TestSyslogLevels: dpfd run --syslog logs each line to the system log at
// its own priority, facility daemon: INFO as daemon.info, the warning of a
// reload (SIGHUP) that needs a restart as daemon.warning, a failed reload
// as daemon.err, and debug lines as daemon.debug once a reload set
// log_level debug; stderr stays empty. The system log is a unixgram socket
// the test listens on, standing in for OpenWrt's logd at /dev/log.
func TestSyslogLevels(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 1)
	sock := filepath.Join(r.dir, "log")
	logd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: sock, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer logd.Close()
	lines := make(chan string, 1024)
	go func() {
		buf := make([]byte, 8192)
		for {
			n, err := logd.Read(buf)
			if err != nil {
				close(lines)
				return
			}
			lines <- string(buf[:n])
		}
	}()
	// expect waits (at most 15 s) for a line with prefix <pri> holding s.
	expect := func(pri int, s string) {
		t.Helper()
		timeout := time.After(15 * time.Second)
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatal("stand-in logd closed")
				}
				if strings.Contains(l, s) {
					if !strings.HasPrefix(l, fmt.Sprintf("<%d>", pri)) || !strings.Contains(l, " dpfd[") || strings.Contains(l, " time=") {
						t.Errorf("line %q: want priority %d, ident dpfd and no time field", l, pri)
					}
					return
				}
			case <-timeout:
				t.Fatalf("no line with %q within 15 s", s)
			}
		}
	}
	r.writeConfig("\toption log_level 'info'\n")
	r.startWith("--syslog", "--syslog-socket", sock)
	expect(30, "msg=\"dpfd running\"")

	if _, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600"); err != nil {
		t.Fatal(err)
	}
	expect(30, "msg=\"mapping created\"")

	// SIGHUP with a change that needs a restart: a warning naming it.
	cfg, _ := os.ReadFile(r.cfgPath)
	os.WriteFile(r.cfgPath, bytes.Replace(cfg, []byte("option backend 'nftables'"), []byte("option backend 'iptables'"), 1), 0o644)
	r.cmd.Process.Signal(syscall.SIGHUP)
	expect(28, "restart_needed=backend")

	// SIGHUP with an invalid file: an error naming the line.
	os.WriteFile(r.cfgPath, append(bytes.Clone(cfg), "\toption rate_limit 'fast'\n"...), 0o644)
	r.cmd.Process.Signal(syscall.SIGHUP)
	expect(27, "option rate_limit")

	// A reload to log_level debug: renewals are logged, at debug.
	os.WriteFile(r.cfgPath, bytes.Replace(cfg, []byte("option log_level 'info'"), []byte("option log_level 'debug'"), 1), 0o644)
	if out, err := r.dpfd("reload"); err != nil || out != "ok\n" {
		t.Fatalf("dpfd reload: %v %q", err, out)
	}
	if _, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600"); err != nil {
		t.Fatal(err)
	}
	expect(31, "msg=\"mapping renewed\"")
	if s := r.logBuf.String(); s != "" {
		t.Errorf("dpfd wrote to stderr with the system log there: %s", s)
	}
}
