package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
)

// fakeDaemon serves the control API on a socket in a temporary directory,
// as a running dpfd would, and records the delete calls it gets.
type fakeDaemon struct {
	cfgPath string
	deletes chan control.DeleteParams
}

var fakeLeases = []control.Lease{
	{Proto: "tcp", ExternalPort: 8080, InternalAddr: "198.51.100.2", InternalPort: 8080,
		Client: "198.51.100.2", Origin: "natpmp", Lifetime: 3600, ExpiresIn: 3599,
		Created: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC), Expires: time.Date(2024, 1, 2, 4, 4, 5, 0, time.UTC)},
	{Proto: "udp", ExternalPort: 9053, InternalAddr: "198.51.100.3", InternalPort: 53,
		Client: "198.51.100.3", Origin: "pcp", Description: "dns", Filters: []string{"203.0.113.0/24"}},
}

// writeConfig writes a dpfd configuration whose control socket is sock.
func writeConfig(t *testing.T, sock string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "dpf")
	cfg := fmt.Sprintf("config dpf 'main'\n\tlist lan_interface 'br-lan'\n\toption wan_interface 'wan'\n\toption socket '%s'\n", sock)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func startFakeDaemon(t *testing.T, leases []control.Lease) *fakeDaemon {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "dpfd.sock")
	ln, err := control.Listen(sock)
	if err != nil {
		t.Fatal(err)
	}
	f := &fakeDaemon{cfgPath: writeConfig(t, sock), deletes: make(chan control.DeleteParams, 10)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ln.Serve(ctx, func(_ context.Context, method string, params json.RawMessage) (any, error) {
			switch method {
			case control.MethodStatus:
				return control.Status{Version: "test", Backend: "nftables", WANInterface: "wan",
					ExternalAddress: "203.0.113.1", Leases: len(leases), MaxLeases: 4096,
					Counters: map[string]uint64{"created": 2}}, nil
			case control.MethodList:
				return leases, nil
			case control.MethodDelete:
				var p control.DeleteParams
				if err := json.Unmarshal(params, &p); err != nil {
					return nil, err
				}
				f.deletes <- p
				for _, l := range leases {
					if (p.Client != "" && l.InternalAddr == p.Client) || (l.Proto == p.Proto && l.ExternalPort == p.ExternalPort) {
						return []control.Lease{l}, nil
					}
				}
				if p.Client != "" {
					return []control.Lease{}, nil
				}
				return nil, fmt.Errorf("no such lease: %s/%d", p.Proto, p.ExternalPort)
			}
			return nil, fmt.Errorf("unknown method %q", method)
		}, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return f
}

// rpcdRun runs "dpfd rpcd ARGS" as rpcd does: arguments as JSON on stdin.
// It returns stdout (which must be one JSON object) and the exit code.
func rpcdRun(t *testing.T, stdin string, args ...string) (map[string]json.RawMessage, int) {
	t.Helper()
	var out, errOut bytes.Buffer
	code := runRPCD(args, strings.NewReader(stdin), &out, &errOut)
	if code != exitOK {
		return nil, code
	}
	var obj map[string]json.RawMessage
	dec := json.NewDecoder(&out)
	if err := dec.Decode(&obj); err != nil || obj == nil {
		t.Fatalf("rpcd %v: stdout is not a JSON object (%v): %q", args, err, out.String())
	}
	if dec.More() {
		t.Fatalf("rpcd %v: more than one JSON value on stdout: %q", args, out.String())
	}
	return obj, code
}

func errorOf(t *testing.T, obj map[string]json.RawMessage) string {
	t.Helper()
	var s string
	if raw, ok := obj["error"]; ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			t.Fatalf("error is not a string: %s", raw)
		}
	}
	return s
}

// TestRPCDList: the signature is what rpcd's plugin.c expects, and "list"
// works without a configuration file (rpcd lists plugins when it starts,
// whatever state dpf is in).
func TestRPCDList(t *testing.T) {
	for _, args := range [][]string{
		{"rpcd", "list"},
		{"rpcd", "-c", filepath.Join(t.TempDir(), "missing"), "list"},
	} {
		var out, errOut bytes.Buffer
		if code := run(args, &out, &errOut); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errOut.String())
		}
		var got map[string]map[string]any
		if err := json.Unmarshal(out.Bytes(), &got); err != nil {
			t.Fatalf("%v: %v: %q", args, err, out.String())
		}
		want := map[string]map[string]any{
			"status": {},
			"leases": {},
			"delete": {"proto": "str", "ext_port": float64(32), "client": "str"},
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("%v = %v, want %v", args, got, want)
		}
	}
}

func TestRPCDUsage(t *testing.T) {
	for _, args := range [][]string{{}, {"call"}, {"lists"}, {"call", "status", "extra"}} {
		var out, errOut bytes.Buffer
		if code := runRPCD(args, strings.NewReader(""), &out, &errOut); code != exitUsage || out.Len() != 0 {
			t.Errorf("rpcd %v: exit %d, stdout %q; want exit %d and nothing on stdout", args, code, out.String(), exitUsage)
		}
	}
}

func TestRPCDStatusAndLeases(t *testing.T) {
	f := startFakeDaemon(t, fakeLeases)

	obj, _ := rpcdRun(t, "{ }", "-c", f.cfgPath, "call", "status")
	var st control.Status
	b, _ := json.Marshal(obj)
	if err := json.Unmarshal(b, &st); err != nil || st.Backend != "nftables" || st.Leases != 2 || st.Counters["created"] != 2 {
		t.Fatalf("status = %s (%v)", b, err)
	}

	// Flags after the arguments work too, as for the other commands.
	obj, _ = rpcdRun(t, "", "call", "leases", "-c", f.cfgPath)
	var ls []control.Lease
	if err := json.Unmarshal(obj["leases"], &ls); err != nil || !reflect.DeepEqual(ls, fakeLeases) {
		t.Fatalf("leases = %s (%v), want %+v", obj["leases"], err, fakeLeases)
	}
}

// TestRPCDNoLeases: an empty table is an empty array, not null, so that
// LuCI can iterate over it.
func TestRPCDNoLeases(t *testing.T) {
	f := startFakeDaemon(t, nil)
	obj, _ := rpcdRun(t, "{}", "-c", f.cfgPath, "call", "leases")
	if got := string(obj["leases"]); got != "[]" {
		t.Fatalf("leases = %s, want []", got)
	}
}

func TestRPCDDelete(t *testing.T) {
	f := startFakeDaemon(t, fakeLeases)
	for _, tc := range []struct {
		in   string
		want control.DeleteParams
	}{
		{`{"proto":"tcp","ext_port":8080}`, control.DeleteParams{Proto: "tcp", ExternalPort: 8080}},
		{`{"proto":"UDP","ext_port":"9053"}`, control.DeleteParams{Proto: "udp", ExternalPort: 9053}},
		{`{"client":"198.51.100.3"}`, control.DeleteParams{Client: "198.51.100.3"}},
		{`{"client":"198.51.100.9","proto":null}`, control.DeleteParams{Client: "198.51.100.9"}},
	} {
		obj, _ := rpcdRun(t, tc.in, "-c", f.cfgPath, "call", "delete")
		if e := errorOf(t, obj); e != "" {
			t.Fatalf("delete %s: error %q", tc.in, e)
		}
		if got := <-f.deletes; got != tc.want {
			t.Fatalf("delete %s sent %+v, want %+v", tc.in, got, tc.want)
		}
		var del []control.Lease
		if err := json.Unmarshal(obj["deleted"], &del); err != nil || del == nil {
			t.Fatalf("delete %s: deleted = %s (%v)", tc.in, obj["deleted"], err)
		}
	}

	// The daemon's refusal comes back as the error.
	obj, _ := rpcdRun(t, `{"proto":"tcp","ext_port":1234}`, "-c", f.cfgPath, "call", "delete")
	if e := errorOf(t, obj); !strings.Contains(e, "no such lease") {
		t.Fatalf("delete of a missing lease: %s", obj)
	}
	<-f.deletes

	// Bad arguments are refused before anything is sent.
	for _, in := range []string{
		``, `{}`, `{"proto":"tcp"}`, `{"ext_port":80}`, `{"proto":"icmp","ext_port":80}`,
		`{"proto":"tcp","ext_port":0}`, `{"proto":"tcp","ext_port":65536}`, `{"proto":"tcp","ext_port":"80a"}`,
		`{"proto":"tcp","ext_port":80,"client":"198.51.100.2"}`, `{"client":7}`, `[1,2]`, `{"proto":`,
	} {
		obj, _ := rpcdRun(t, in, "-c", f.cfgPath, "call", "delete")
		if errorOf(t, obj) == "" {
			t.Errorf("delete %q: no error: %s", in, obj)
		}
	}
	select {
	case p := <-f.deletes:
		t.Fatalf("bad arguments reached the daemon: %+v", p)
	default:
	}
}

// TestRPCDFailuresAreObjects: whatever goes wrong, rpcd gets one JSON object
// with an error and exit status 0.
func TestRPCDFailuresAreObjects(t *testing.T) {
	gone := writeConfig(t, filepath.Join(t.TempDir(), "dpfd.sock"))
	for _, method := range []string{"status", "leases", "delete"} {
		obj, code := rpcdRun(t, `{"proto":"tcp","ext_port":8080}`, "-c", gone, "call", method)
		if code != exitOK || errorOf(t, obj) != errRPCDNotRunning {
			t.Errorf("%s without a daemon: exit %d, %s", method, code, obj)
		}
	}

	broken := filepath.Join(t.TempDir(), "dpf")
	if err := os.WriteFile(broken, []byte("config dpf 'main'\n\toption max_lifetime abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	obj, _ := rpcdRun(t, "{}", "-c", broken, "call", "status")
	if e := errorOf(t, obj); !strings.Contains(e, broken) {
		t.Errorf("broken configuration: %s", obj)
	}

	f := startFakeDaemon(t, nil)
	obj, _ = rpcdRun(t, "{}", "-c", f.cfgPath, "call", "reboot")
	if e := errorOf(t, obj); !strings.Contains(e, "unknown method") {
		t.Errorf("unknown method: %s", obj)
	}
}

// TestRPCDNotRunningIsErrNotRunning pins the mapping the not-running
// message depends on.
func TestRPCDNotRunningIsErrNotRunning(t *testing.T) {
	err := control.Call(filepath.Join(t.TempDir(), "none.sock"), control.MethodStatus, nil, nil)
	if !errors.Is(err, control.ErrNotRunning) {
		t.Fatalf("Call on a missing socket: %v", err)
	}
	if got := rpcdError(err)["error"]; got != errRPCDNotRunning {
		t.Fatalf("rpcdError = %q", got)
	}
}
