package systest

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
)

// repoFile returns the absolute path of a file of the repository (the tests
// run in src/systest) and fails unless it exists.
func repoFile(t *testing.T, rel string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("shipped file missing: %v", err)
	}
	return p
}

// hookEnv is the environment the shipped shell files run with here: a bare
// one, as rpcd, procd and hotplug-call give them, plus the two variables
// that point the files at the test's dpfd and configuration instead of
// /usr/sbin/dpfd and /etc/config/dpf.
func (r *router) hookEnv(extra ...string) []string {
	return append([]string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DPF_DPFD=" + dpfdBin,
		"DPF_CONFIG=" + r.cfgPath,
	}, extra...)
}

// runHook runs name with args in the router namespace, with env and stdin,
// and returns stdout and stderr. It fails the test on a non-zero exit.
func (r *router) runHook(env []string, stdin string, name string, args ...string) (string, string) {
	r.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", r.lab.Router, name}, args...)...)
	cmd.Env = env
	cmd.Stdin = strings.NewReader(stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		r.t.Fatalf("%s %s: %v\nstdout: %s\nstderr: %s", name, strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), stderr.String()
}

// rpcdCall runs the shipped rpcd plugin as rpcd does ("PLUGIN call METHOD",
// the arguments as JSON on stdin, then EOF) and decodes its answer, which
// must be exactly one JSON object.
func (r *router) rpcdCall(plugin, method, args string) map[string]json.RawMessage {
	r.t.Helper()
	out, _ := r.runHook(r.hookEnv(), args, plugin, "call", method)
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(&obj); err != nil || obj == nil {
		r.t.Fatalf("rpcd call %s %s: not a JSON object (%v): %q", method, args, err, out)
	}
	if dec.More() {
		r.t.Fatalf("rpcd call %s: more than one JSON value: %q", method, out)
	}
	return obj
}

func rpcdLeases(t *testing.T, obj map[string]json.RawMessage, key string) []control.Lease {
	t.Helper()
	var ls []control.Lease
	if err := json.Unmarshal(obj[key], &ls); err != nil || ls == nil {
		t.Fatalf("%s = %s (%v), want an array of leases; answer %s", key, obj[key], err, obj)
	}
	return ls
}

func rpcdErr(obj map[string]json.RawMessage) string {
	var s string
	json.Unmarshal(obj["error"], &s)
	return s
}

// TestRPCDPlugin drives dpfd through files/usr/libexec/rpcd/dpf exactly as
// rpcd does, against a running dpfd with leases made by natpmpc: list,
// status, leases and delete (by port and by client), checking that a
// deleted pinhole stops forwarding, that bad arguments and a stopped dpfd
// give an error object, and that the plugin always exits 0.
func TestRPCDPlugin(t *testing.T) {
	needTools(t)
	plugin := repoFile(t, "files/usr/libexec/rpcd/dpf")
	if fi, err := os.Stat(plugin); err != nil || fi.Mode().Perm()&0o111 == 0 {
		t.Fatalf("%s must be executable (rpcd only runs executables): %v", plugin, fi.Mode())
	}
	for _, be := range backends {
		t.Run(be, func(t *testing.T) {
			r := newRouter(t, be, 2)
			r.start()
			r.echoServers(0, 8080)
			r.echoServers(1, 8090)
			for _, m := range []struct {
				host        int
				port, proto string
			}{{0, "8080", "tcp"}, {0, "8080", "udp"}, {1, "8090", "tcp"}} {
				if ext, _, err := r.natpmpc(m.host, "-a", m.port, m.port, m.proto, "3600"); err != nil || itoa(int(ext)) != m.port {
					t.Fatalf("natpmpc %v: port %d, %v", m, ext, err)
				}
			}
			r.mustReach("tcp", 8080)
			r.mustReach("udp", 8080)
			r.mustReach("tcp", 8090)

			// list: what rpcd reads when it starts.
			out, _ := r.runHook(r.hookEnv(), "", plugin, "list")
			var sig map[string]map[string]any
			if err := json.Unmarshal([]byte(out), &sig); err != nil {
				t.Fatalf("list: %v: %q", err, out)
			}
			if _, ok := sig["status"]; !ok || sig["delete"]["ext_port"] != float64(32) || sig["delete"]["proto"] != "str" {
				t.Fatalf("list = %s", out)
			}

			var st control.Status
			obj := r.rpcdCall(plugin, "status", "{ }")
			b, _ := json.Marshal(obj)
			if err := json.Unmarshal(b, &st); err != nil || st.Backend != be || st.Leases != 3 ||
				st.ExternalAddress != lab.RouterWAN.String() || st.WANInterface != "wan0" {
				t.Fatalf("status = %s (%v)", b, err)
			}

			ls := rpcdLeases(t, r.rpcdCall(plugin, "leases", "{ }"), "leases")
			if len(ls) != 3 {
				t.Fatalf("leases: %+v", ls)
			}
			for _, l := range ls {
				want := lab.LANHost(0).String()
				if l.ExternalPort == 8090 {
					want = lab.LANHost(1).String()
				}
				if l.InternalAddr != want || l.Origin != "natpmp" || l.ExpiresIn <= 0 || l.Expires.IsZero() {
					t.Fatalf("lease %+v", l)
				}
			}

			// Delete one lease by protocol and port, as LuCI would send
			// it (the port as a string, as from a form, also works).
			del := rpcdLeases(t, r.rpcdCall(plugin, "delete", `{"proto":"tcp","ext_port":"8080"}`), "deleted")
			if len(del) != 1 || del[0].Proto != "tcp" || del[0].ExternalPort != 8080 {
				t.Fatalf("deleted %+v", del)
			}
			r.mustNotReach("tcp", 8080)
			r.mustReach("udp", 8080)

			// Every lease of one host.
			del = rpcdLeases(t, r.rpcdCall(plugin, "delete", `{"client":"`+lab.LANHost(1).String()+`"}`), "deleted")
			if len(del) != 1 || del[0].ExternalPort != 8090 {
				t.Fatalf("deleted %+v", del)
			}
			r.mustNotReach("tcp", 8090)
			r.mustReach("udp", 8080)
			if ls := rpcdLeases(t, r.rpcdCall(plugin, "leases", ""), "leases"); len(ls) != 1 || ls[0].Proto != "udp" {
				t.Fatalf("leases after deleting: %+v", ls)
			}

			for _, args := range []string{`{"proto":"tcp","ext_port":8080}`, `{}`, `{"proto":"gre","ext_port":1}`} {
				if obj := r.rpcdCall(plugin, "delete", args); rpcdErr(obj) == "" {
					t.Errorf("delete %s: no error: %s", args, obj)
				}
			}

			// A stopped dpfd still gets rpcd a valid answer.
			r.kill(syscall.SIGTERM)
			for _, m := range []string{"status", "leases", "delete"} {
				if obj := r.rpcdCall(plugin, m, `{"proto":"udp","ext_port":8080}`); rpcdErr(obj) != "dpfd is not running" {
					t.Errorf("%s with dpfd stopped: %s", m, obj)
				}
			}
		})
	}
}
