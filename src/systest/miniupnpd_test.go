package systest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/bench"
	"github.com/dpf-router/dpf/src/internal/lab"
)

// miniupnpd as the gateway, to show that DPF's client library is a general
// PCP/NAT-PMP client. The router runs Debian's miniupnpd-nftables with the
// chains its nft_init.sh would make, plus masquerade and a forward policy
// of drop, like a home router.
//
// miniupnpd refuses to forward when its WAN address is in a reserved range
// (203.0.113.0/24 is one) unless STUN tells it that the address is public
// and unfiltered; so the internet host runs coturn as an RFC 5780 STUN
// server on both of its addresses, and miniupnpd is told to use it. The
// ruleset is bench.MiniupnpdRuleset, which the benchmark uses too.

const miniupnpdConf = `ext_ifname=wan0
listening_ip=br-lan
port=0
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
system_uptime=no
min_lifetime=120
max_lifetime=86400
ext_perform_stun=yes
ext_stun_host=203.0.113.2
ext_stun_port=3478
allow 1024-65535 198.51.100.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`

// needMiniupnpd fails the test when miniupnpd or coturn is missing.
func needMiniupnpd(t *testing.T) {
	t.Helper()
	for _, tool := range []string{"miniupnpd", "turnserver", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (make test installs miniupnpd-nftables and coturn): %v", tool, err)
		}
	}
}

// startSTUN runs coturn as a STUN-only RFC 5780 server on both internet
// addresses (port 3478, alternate port 3479).
func (r *router) startSTUN() {
	r.t.Helper()
	logf, err := os.Create(filepath.Join(r.dir, "turnserver.log"))
	if err != nil {
		r.t.Fatal(err)
	}
	r.t.Cleanup(func() { logf.Close() })
	// --pidfile and --db keep coturn from writing to /var.
	cmd := exec.Command("turnserver", "-n", "--stun-only", "--no-auth", "--no-cli", "--no-tls", "--no-dtls", "--no-tcp",
		"-L", lab.Inet.String(), "-L", lab.Inet2.String(), "--alt-listening-port", "3479",
		"--pidfile", filepath.Join(r.dir, "turnserver.pid"), "--db", filepath.Join(r.dir, "turndb"),
		"--log-file=stdout", "--simple-log")
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := r.lab.Start(r.lab.Inet, cmd); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, _ := r.lab.Output(5*time.Second, r.lab.Inet, "ss", "-Hlnu", "sport", "= :3479")
		if strings.Contains(out, lab.Inet2.String()) {
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			r.t.Fatalf("turnserver did not come up:\n%s", b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// startMiniupnpd sets up the router's nftables for miniupnpd and runs it in
// the foreground (-d), waiting until it listens for NAT-PMP/PCP with port
// forwarding enabled. The returned command is stopped by the lab.
func (r *router) startMiniupnpd() *exec.Cmd {
	r.t.Helper()
	if out, err := r.lab.Output(10*time.Second, r.lab.Router, "nft", "list", "table", "inet", "filter"); err != nil {
		rules := filepath.Join(r.dir, "miniupnpd.nft")
		if err := os.WriteFile(rules, []byte(bench.MiniupnpdRuleset), 0o644); err != nil {
			r.t.Fatal(err)
		}
		if err := r.lab.Exec(r.lab.Router, "nft", "-f", rules); err != nil {
			r.t.Fatalf("miniupnpd ruleset: %v (%s)", err, out)
		}
	}
	conf := filepath.Join(r.dir, "miniupnpd.conf")
	if err := os.WriteFile(conf, []byte(miniupnpdConf), 0o644); err != nil {
		r.t.Fatal(err)
	}
	if r.logBuf == nil {
		r.logBuf = &syncBuffer{}
	}
	cmd := exec.Command("miniupnpd", "-d", "-f", conf, "-P", filepath.Join(r.dir, "miniupnpd.pid"))
	start := len(r.logBuf.String())
	cmd.Stdout, cmd.Stderr = r.logBuf, r.logBuf
	if err := r.lab.Start(r.lab.Router, cmd); err != nil {
		r.t.Fatal(err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for {
		log := r.logBuf.String()[start:]
		if strings.Contains(log, "Port forwarding is now disabled") || strings.Contains(log, "EXITING") {
			r.t.Fatalf("miniupnpd will not forward:\n%s", log)
		}
		if strings.Contains(log, "Listening for NAT-PMP/PCP traffic") {
			return cmd
		}
		if time.Now().After(deadline) {
			r.t.Fatalf("miniupnpd did not come up:\n%s", log)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// stopMiniupnpd stops it with sig; with SIGKILL its rules stay behind,
// as after a crash.
func (r *router) stopMiniupnpd(cmd *exec.Cmd, sig syscall.Signal) {
	lab.Stop(cmd, sig)
}
