// Package dbustest runs a private D-Bus message bus for tests: a real
// dbus-daemon, configured like a system bus (EXTERNAL authentication,
// deny-by-default policy) and including the policy files a test names, so
// that the policy DPF ships is what the test exercises.
//
// It needs the dbus-daemon program (Debian package dbus-daemon, pulled in by
// dbus). Where it is missing, [Start] skips the test, or fails it when
// DPF_REQUIRE_ROOT_TESTS=1 (CI), as other environment-dependent tests do.
package dbustest

import (
	"bytes"
	"fmt"
	"html"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/testenv"
)

// startTimeout bounds how long dbus-daemon may take to print its address.
const startTimeout = 10 * time.Second

// PolicyFile is the policy DPF installs, relative to a package directory
// two levels below the module root (src/dbusapi, src/systest).
var PolicyFile = filepath.Join("..", "..", "files", "usr", "share", "dbus-1", "system.d", "org.dpf.Router.conf")

// Options configure a Bus. The zero value is a bus with the system bus's
// default policy and nothing else.
type Options struct {
	// Policies are busconfig files included after the default policy, as
	// a system bus includes /usr/share/dbus-1/system.d/*.conf.
	Policies []string
	// Extra is busconfig XML (policy elements) added after Policies.
	Extra string
}

// Bus is a running private dbus-daemon. Its socket lives in a directory
// anyone may enter, so that callers switched to another user (setpriv) and
// processes in other network namespaces can reach it.
type Bus struct {
	// Dir holds the socket and the configuration; removed at cleanup.
	Dir string
	// Socket is the bus socket's path.
	Socket string
	// Address is the bus's D-Bus address: unix:path=Socket.
	Address string

	t       testing.TB
	cfgPath string

	mu     sync.Mutex
	cmd    *exec.Cmd // nil while stopped
	stderr *bytes.Buffer
}

// Require fails or skips t (see the package comment) unless dbus-daemon is
// installed.
func Require(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("dbus-daemon"); err == nil {
		return
	}
	if os.Getenv(testenv.RequireRootEnv) == "1" {
		t.Fatalf("dbus-daemon is not installed (Debian package dbus) and %s=1 forbids skipping", testenv.RequireRootEnv)
	}
	t.Skip("skipping: dbus-daemon is not installed (Debian package dbus)")
}

// Start starts a private bus; it is stopped and its directory removed when
// t ends.
func Start(t testing.TB, opts Options) *Bus {
	t.Helper()
	Require(t)
	// Not t.TempDir: its parent is private (0700), and the socket must be
	// reachable by other users. Short, too: socket paths are limited to
	// 108 bytes.
	dir, err := os.MkdirTemp("", "dpf-dbus-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b := &Bus{Dir: dir, Socket: filepath.Join(dir, "bus"), cfgPath: filepath.Join(dir, "bus.conf"), t: t}
	b.Address = "unix:path=" + b.Socket
	t.Cleanup(func() {
		b.Stop()
		os.RemoveAll(dir)
	})
	var inc strings.Builder
	for _, p := range opts.Policies {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(abs); err != nil {
			t.Fatalf("policy file: %v", err)
		}
		fmt.Fprintf(&inc, "  <include>%s</include>\n", html.EscapeString(abs))
	}
	cfg := fmt.Sprintf(busConfig, html.EscapeString(b.Socket), inc.String(), opts.Extra)
	if err := os.WriteFile(b.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	b.start()
	return b
}

// start runs dbus-daemon and waits until it has printed its address.
func (b *Bus) start() {
	b.t.Helper()
	cmd := exec.Command("dbus-daemon", "--config-file="+b.cfgPath, "--nofork", "--nopidfile", "--print-address")
	stderr := &bytes.Buffer{}
	cmd.Stderr = &lockedWriter{w: stderr, mu: &b.mu}
	addr := &firstLine{c: make(chan string, 1)}
	cmd.Stdout = addr
	if err := cmd.Start(); err != nil {
		b.t.Fatalf("starting dbus-daemon: %v", err)
	}
	b.mu.Lock()
	b.cmd, b.stderr = cmd, stderr
	b.mu.Unlock()
	select {
	case s := <-addr.c:
		if !strings.HasPrefix(s, "unix:path="+b.Socket) {
			b.t.Fatalf("dbus-daemon printed %q, want its address\n%s", s, b.Stderr())
		}
	case <-time.After(startTimeout):
		b.t.Fatalf("dbus-daemon did not start within %v\n%s", startTimeout, b.Stderr())
	}
}

// Stop kills the bus (every connection to it breaks), as a crash or a
// restart of the system bus would. Stopping a stopped bus does nothing.
func (b *Bus) Stop() {
	b.mu.Lock()
	cmd := b.cmd
	b.cmd = nil
	b.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	os.Remove(b.Socket)
}

// Restart starts the bus again, at the same address, after Stop.
func (b *Bus) Restart() {
	b.t.Helper()
	b.Stop()
	b.start()
}

// Stderr returns what dbus-daemon wrote to its standard error.
func (b *Bus) Stderr() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.stderr == nil {
		return ""
	}
	return b.stderr.String()
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// firstLine sends the first line written to it on c and drops the rest.
type firstLine struct {
	mu   sync.Mutex
	buf  []byte
	sent bool
	c    chan string
}

func (f *firstLine) Write(p []byte) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.sent {
		f.buf = append(f.buf, p...)
		if i := bytes.IndexByte(f.buf, '\n'); i >= 0 {
			f.c <- strings.TrimSpace(string(f.buf[:i]))
			f.sent, f.buf = true, nil
		}
	}
	return len(p), nil
}

// busConfig is Debian's /usr/share/dbus-1/system.conf without what a test
// cannot or need not do (run as messagebus, fork, activate services, log to
// syslog), then the included policies and extra XML. Arguments: socket
// path, includes, extra.
const busConfig = `<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>system</type>
  <auth>EXTERNAL</auth>
  <listen>unix:path=%s</listen>
  <policy context="default">
    <allow user="*"/>
    <deny own="*"/>
    <deny send_type="method_call"/>
    <allow send_type="signal"/>
    <allow send_requested_reply="true" send_type="method_return"/>
    <allow send_requested_reply="true" send_type="error"/>
    <allow receive_type="method_call"/>
    <allow receive_type="method_return"/>
    <allow receive_type="error"/>
    <allow receive_type="signal"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Introspectable"/>
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Properties"/>
    <deny send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus" send_member="UpdateActivationEnvironment"/>
  </policy>
  <policy user="root">
    <allow send_destination="org.freedesktop.DBus" send_interface="org.freedesktop.DBus.Monitoring"/>
  </policy>
%s%s
</busconfig>
`
