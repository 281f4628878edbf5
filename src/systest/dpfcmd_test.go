package systest

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
)

// The dpf command and the LD_PRELOAD shim, built once by TestMain next to
// each other (dpf finds the shim beside itself).
var dpfBin, preloadLib string

func buildClientTools(dir string) error {
	dpfBin = filepath.Join(dir, "dpf")
	build := exec.Command("go", "build", "-o", dpfBin, "github.com/dpf-router/dpf/client/cmd/dpf")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return fmt.Errorf("building dpf: %w", err)
	}
	src, err := filepath.Abs("../../client/preload/dpf_preload.c")
	if err != nil {
		return err
	}
	preloadLib = filepath.Join(dir, "libdpf-preload.so")
	cc := exec.Command("gcc", "-O2", "-fPIC", "-shared", "-Wall", "-Wextra", "-Werror",
		"-o", preloadLib, src, "-ldl", "-pthread")
	cc.Stderr = os.Stderr
	if err := cc.Run(); err != nil {
		return fmt.Errorf("building the preload shim: %w", err)
	}
	return nil
}

// dpfProc is a long-running dpf command in a namespace, its output read
// line by line.
type dpfProc struct {
	cmd   *exec.Cmd
	lines chan string
	out   *syncBuffer
}

// startDPF starts `dpf args...` in namespace ns with its state directory
// in the test's directory.
func (r *router) startDPF(ns string, args ...string) *dpfProc {
	r.t.Helper()
	cmd := exec.Command(dpfBin, args...)
	cmd.Env = append(os.Environ(), "DPF_STATE_DIR="+filepath.Join(r.dir, "state-"+ns))
	p := &dpfProc{cmd: cmd, lines: make(chan string, 200), out: &syncBuffer{}}
	pr, pw := io.Pipe()
	cmd.Stdout = io.MultiWriter(pw, p.out)
	cmd.Stderr = io.MultiWriter(pw, p.out)
	if err := r.lab.Start(ns, cmd); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
	}()
	go func() {
		cmd.Wait()
		pw.Close()
	}()
	r.t.Cleanup(func() {
		if r.t.Failed() {
			r.t.Logf("dpf %s output:\n%s", strings.Join(args, " "), p.out.String())
		}
	})
	return p
}

// expect waits (bounded) for an output line containing s.
func (p *dpfProc) expect(t *testing.T, s string, within time.Duration) string {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case line := <-p.lines:
			if strings.Contains(line, s) {
				return line
			}
		case <-timer.C:
			t.Fatalf("no %q from dpf within %v; output:\n%s", s, within, p.out.String())
		}
	}
}

// expectAll waits (bounded) until lines containing each of ss were seen,
// in any order.
func (p *dpfProc) expectAll(t *testing.T, within time.Duration, ss ...string) {
	t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	left := append([]string(nil), ss...)
	for len(left) > 0 {
		select {
		case line := <-p.lines:
			for i, s := range left {
				if strings.Contains(line, s) {
					left = append(left[:i], left[i+1:]...)
					break
				}
			}
		case <-timer.C:
			t.Fatalf("no %q from dpf within %v; output:\n%s", left, within, p.out.String())
		}
	}
}

// dpfJSON runs a short dpf command in ns and decodes its JSON output.
func (r *router) dpfJSON(ns string, v any, args ...string) {
	r.t.Helper()
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, dpfBin}, args...)...)
	cmd.Env = append(os.Environ(), "DPF_STATE_DIR="+filepath.Join(r.dir, "state-"+ns))
	var stderr strings.Builder
	cmd.Stderr = &stderr
	done := make(chan struct{})
	timer := time.AfterFunc(30*time.Second, func() {
		if cmd.Process != nil {
			cmd.Process.Kill()
		}
	})
	defer timer.Stop()
	out, err := cmd.Output()
	close(done)
	if err != nil {
		r.t.Fatalf("dpf %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	if err := json.Unmarshal(out, v); err != nil {
		r.t.Fatalf("dpf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// TestDPFExposeAndStatus: `dpf expose tcp 8080` holds a pinhole for a LAN
// server while it runs, `dpf status` shows the gateway, protocol, external
// address and the mapping, and SIGTERM releases it.
func TestDPFExposeAndStatus(t *testing.T) {
	needTools(t)
	r := newRouter(t, "nftables", 1)
	r.start()
	r.echoServers(0, 8080)
	r.mustNotReach("tcp", 8080)
	lan := r.lab.LAN[0]
	p := r.startDPF(lan, "expose", "--description", "systest", "tcp", "8080")
	line := p.expect(t, "is reachable at", 30*time.Second)
	want := fmt.Sprintf("reachable at %s:8080", lab.RouterWAN)
	if !strings.Contains(line, want) {
		t.Fatalf("dpf expose said %q, want %q", line, want)
	}
	r.mustReach("tcp", 8080)
	if ls := r.leases(); len(ls) != 1 || ls[0].Description != "systest" {
		t.Fatalf("leases: %+v", ls)
	}

	var st struct {
		Gateway  string `json:"gateway"`
		Protocol string `json:"protocol"`
		External string `json:"external_address"`
		Mappings []struct {
			Proto, Internal, External, Command string
		} `json:"mappings"`
	}
	r.dpfJSON(lan, &st, "status", "--json")
	if st.Gateway != lab.RouterLAN.String()+":5351" || st.Protocol != "PCP" || st.External != lab.RouterWAN.String() {
		t.Fatalf("dpf status: %+v", st)
	}
	if len(st.Mappings) != 1 || st.Mappings[0].External != lab.RouterWAN.String()+":8080" ||
		st.Mappings[0].Internal != lab.LANHost(0).String()+":8080" || st.Mappings[0].Proto != "tcp" {
		t.Fatalf("dpf status mappings: %+v", st.Mappings)
	}
	// The status query's own probe mapping is gone again.
	if ls := r.leases(); len(ls) != 1 {
		t.Fatalf("leases after status: %+v", ls)
	}

	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	p.expect(t, "released", 10*time.Second)
	if ls := r.leases(); len(ls) != 0 {
		t.Fatalf("leases after SIGTERM: %+v", ls)
	}
	r.mustNotReach("tcp", 8080)
	r.dpfJSON(lan, &st, "status", "--json")
	if len(st.Mappings) != 0 {
		t.Fatalf("dpf status after exit: %+v", st.Mappings)
	}
}

// startDPFDIn runs dpfd in namespace ns of any topology (lanIf and wanIf
// are its interfaces there) and waits until it listens. procs stops it.
func startDPFDIn(t *testing.T, procs *lab.Lab, ns, lanIf, wanIf string) {
	t.Helper()
	dir := t.TempDir()
	cfg := fmt.Sprintf(`config dpf 'main'
	list lan_interface '%s'
	option wan_interface '%s'
	option backend 'nftables'
	option db '%s'
	option socket '%s'
`, lanIf, wanIf, filepath.Join(dir, "leases.db"), filepath.Join(dir, "dpfd.sock"))
	cfgPath := filepath.Join(dir, "dpf.conf")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	log := &syncBuffer{}
	cmd := exec.Command(dpfdBin, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = log, log
	if err := procs.Start(ns, cmd); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		lab.Stop(cmd, syscall.SIGTERM)
		procs.Exec(ns, dpfdBin, "cleanup", "-c", cfgPath)
		if t.Failed() {
			t.Logf("dpfd log:\n%s", log.String())
		}
	})
	deadline := time.Now().Add(15 * time.Second)
	for !strings.Contains(log.String(), "listening") {
		if time.Now().After(deadline) {
			t.Fatalf("dpfd did not start:\n%s", log.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// natTypeJSON is what `dpf nat-type --json` prints.
type natTypeJSON struct {
	Mapped          string `json:"mapped"`
	Mapping         string `json:"mapping"`
	Filtering       string `json:"filtering"`
	GatewayProtocol string `json:"gateway_protocol"`
	GatewayExternal string `json:"gateway_external_address"`
	Verdict         string `json:"verdict"`
	Text            string `json:"text"`
	CGNAT           bool   `json:"cgnat"`
	InboundViaDPF   bool   `json:"inbound_via_dpf"`
}

// TestDPFNATTypeThroughDPFD: behind a masquerading router that runs dpfd,
// `dpf nat-type` finds the gateway speaking PCP with the same external
// address STUN reflects, and says inbound works through DPF.
func TestDPFNATTypeThroughDPFD(t *testing.T) {
	needTools(t)
	needMiniupnpd(t) // coturn
	r := newRouter(t, "nftables", 1)
	ntNFT(t, r.lab, r.lab.Router, `table ip sysnat {
	chain postrouting {
		type nat hook postrouting priority srcnat;
		oifname "wan0" masquerade
	}
}
`)
	r.start()
	r.startSTUN()
	var nt natTypeJSON
	r.dpfJSON(r.lab.LAN[0], &nt, "nat-type", "--json", "--stun", lab.Inet.String()+":3478")
	t.Logf("%+v", nt)
	if nt.Verdict != "inbound-via-dpf" || !nt.InboundViaDPF || nt.GatewayProtocol != "PCP" ||
		nt.GatewayExternal != lab.RouterWAN.String() || !strings.HasPrefix(nt.Mapped, lab.RouterWAN.String()+":") {
		t.Fatalf("dpf nat-type: %+v", nt)
	}
	if nt.Mapping != "Endpoint-Independent" || nt.Filtering != "Address and Port-Dependent" {
		t.Fatalf("behaviour: mapping %s, filtering %s", nt.Mapping, nt.Filtering)
	}
	if ls := r.leases(); len(ls) != 0 {
		t.Fatalf("nat-type left leases behind: %+v", ls)
	}
}
