package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/control"
)

// serveReload answers the control API's reload call on a socket in a
// temporary directory with answer (or err), as a running dpfd would, and
// returns a configuration file naming that socket.
func serveReload(t *testing.T, answer control.ReloadResult, err error) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "dpfd.sock")
	ln, lerr := control.Listen(sock)
	if lerr != nil {
		t.Fatal(lerr)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ln.Serve(ctx, func(_ context.Context, method string, _ json.RawMessage) (any, error) {
			if method != control.MethodReload {
				return nil, errors.New("unexpected method " + method)
			}
			return answer, err
		}, nil)
	}()
	t.Cleanup(func() { cancel(); <-done })
	return writeConfig(t, sock)
}

// TestReloadCommand: dpfd reload prints "ok" and exits 0 when the daemon
// applied the file, prints the options and exits 4 when it answers that a
// restart is needed, and exits 1 with the daemon's error, 3 when no daemon
// runs.
func TestReloadCommand(t *testing.T) {
	cases := []struct {
		name   string
		answer control.ReloadResult
		err    error
		code   int
		stdout string
		stderr string
	}{
		{"applied", control.ReloadResult{OK: true}, nil, exitOK, "ok\n", ""},
		{"restart", control.ReloadResult{RestartNeeded: []string{"backend", "db"}}, nil, exitRestart, "restart needed: backend, db\n", ""},
		{"error", control.ReloadResult{}, errors.New("/etc/config/dpf:7: option max_lifetime: bad"), exitFailure, "", "dpfd: /etc/config/dpf:7: option max_lifetime: bad\n"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := serveReload(t, c.answer, c.err)
			var out, errOut bytes.Buffer
			code := run([]string{"reload", "-c", cfg}, &out, &errOut)
			if code != c.code || out.String() != c.stdout || errOut.String() != c.stderr {
				t.Errorf("exit %d, stdout %q, stderr %q; want %d, %q, %q", code, out.String(), errOut.String(), c.code, c.stdout, c.stderr)
			}
		})
	}
	var out, errOut bytes.Buffer
	if code := run([]string{"reload", "-c", writeConfig(t, filepath.Join(t.TempDir(), "none.sock"))}, &out, &errOut); code != exitNotRunning {
		t.Errorf("reload without a daemon: exit %d, want %d (%s)", code, exitNotRunning, errOut.String())
	}
}

// TestNewLoggerSyslog: with --syslog the logger sends each line to the
// system log's socket (here a unixgram socket standing in for OpenWrt's
// logd at /dev/log) at its level's priority, from the configured level
// unless --log-level says otherwise; without it, lines go to stderr.
func TestNewLoggerSyslog(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log")
	logd, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer logd.Close()
	next := func() string {
		t.Helper()
		buf := make([]byte, 4096)
		logd.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := logd.Read(buf)
		if err != nil {
			t.Fatalf("stand-in logd: %v", err)
		}
		return string(buf[:n])
	}
	var stderr bytes.Buffer
	log, level, err := newLogger(logOptions{syslog: true, syslogPath: path}, "warn", &stderr)
	if err != nil {
		t.Fatal(err)
	}
	log.Info("not at warn")
	log.Warn("at warn", "k", "v")
	if got := next(); !regexp.MustCompile(`^<28>... .. ..:..:.. dpfd\[\d+\]: level=WARN msg="at warn" k=v\n$`).MatchString(got) {
		t.Errorf("warning sent as %q", got)
	}
	level.Set(slog.LevelDebug) // what a reload to log_level debug does
	log.Debug("now shown")
	if got := next(); !strings.HasPrefix(got, "<31>") || !strings.Contains(got, `msg="now shown"`) {
		t.Errorf("debug line sent as %q", got)
	}
	log.Error("failed")
	if got := next(); !strings.HasPrefix(got, "<27>") {
		t.Errorf("error line sent as %q", got)
	}
	if stderr.Len() != 0 {
		t.Errorf("lines on stderr while the system log is there: %q", stderr.String())
	}

	_, level, err = newLogger(logOptions{level: "debug"}, "error", &stderr)
	if err != nil || level.Level() != slog.LevelDebug {
		t.Errorf("--log-level debug over option error: level %v, %v", level, err)
	}
	log, _, _ = newLogger(logOptions{}, "info", &stderr)
	log.Info("to stderr")
	if !regexp.MustCompile(`^time=\S+ level=INFO msg="to stderr"\n$`).MatchString(stderr.String()) {
		t.Errorf("stderr: %q", stderr.String())
	}
	if _, _, err := newLogger(logOptions{level: "loud"}, "info", &stderr); err == nil {
		t.Error("--log-level loud accepted")
	}
}
