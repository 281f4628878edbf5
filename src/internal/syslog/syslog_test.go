package syslog

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// readWait bounds each wait for a datagram.
const readWait = 5 * time.Second

// logd is a stand-in for OpenWrt's logd (ubox log/syslog.c): a unixgram
// socket at the path the handler is given instead of /dev/log. It parses
// each datagram as logd does: a leading "<PRI>" is the priority; then, if
// byte 15 of the rest is a space, the first 16 bytes (the RFC 3164
// timestamp "Mmm dd hh:mm:ss ") are dropped; a trailing newline is
// dropped; what is left is the stored line.
type logd struct {
	t    *testing.T
	path string
	conn *net.UnixConn
}

type logLine struct {
	raw  string // the datagram
	pri  int
	text string // what logd stores
}

func startLogd(t *testing.T, path string) *logd {
	t.Helper()
	os.Remove(path) // logd unlinks /dev/log before it binds
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	l := &logd{t: t, path: path, conn: c}
	t.Cleanup(func() { c.Close() })
	return l
}

// stop closes the socket and removes it, as a logd that exits.
func (l *logd) stop() {
	l.conn.Close()
	os.Remove(l.path)
}

var prioRE = regexp.MustCompile(`^<([0-9]*)>(.*)$`)

// next returns the next datagram as logd would store it.
func (l *logd) next() logLine {
	l.t.Helper()
	buf := make([]byte, 8192)
	l.conn.SetReadDeadline(time.Now().Add(readWait))
	n, err := l.conn.Read(buf)
	if err != nil {
		l.t.Fatalf("stand-in logd: no datagram within %v: %v", readWait, err)
	}
	raw := string(buf[:n])
	s := strings.TrimSuffix(raw, "\n")
	m := prioRE.FindStringSubmatch(s)
	if m == nil {
		l.t.Fatalf("datagram without a priority: %q", raw)
	}
	pri, _ := strconv.Atoi(m[1])
	s = m[2]
	if len(s) > 16 && s[15] == ' ' {
		s = s[16:]
	} else {
		l.t.Fatalf("datagram without the 16-byte timestamp logd drops: %q", raw)
	}
	return logLine{raw: raw, pri: pri, text: s}
}

// socketPath returns a path for a stand-in /dev/log.
func socketPath(t *testing.T) string {
	return filepath.Join(t.TempDir(), "log")
}

var headerRE = regexp.MustCompile(`^<\d+>[A-Z][a-z]{2} [ 1-3]\d \d{2}:\d{2}:\d{2} dpfd\[(\d+)\]: `)

// TestPriorities: each level arrives at the stand-in logd as one datagram
// with facility daemon and its own severity, an RFC 3164 header naming
// dpfd and its pid, and slog's text without a time.
func TestPriorities(t *testing.T) {
	path := socketPath(t)
	d := startLogd(t, path)
	var fb bytes.Buffer
	h := New(Options{Path: path, Tag: "dpfd", Level: slog.LevelDebug, Fallback: &fb})
	defer h.Close()
	log := slog.New(h)
	cases := []struct {
		log  func(msg string, args ...any)
		pri  int
		name string
	}{
		{log.Debug, 31, "DEBUG"}, // daemon.debug: 3<<3 | 7
		{log.Info, 30, "INFO"},   // daemon.info
		{log.Warn, 28, "WARN"},   // daemon.warning
		{log.Error, 27, "ERROR"}, // daemon.err
	}
	for _, c := range cases {
		c.log("a message", "key", "value with spaces", "n", 7)
		got := d.next()
		if got.pri != c.pri {
			t.Errorf("%s: priority %d, want %d (%q)", c.name, got.pri, c.pri, got.raw)
		}
		m := headerRE.FindStringSubmatch(got.raw)
		if m == nil || m[1] != strconv.Itoa(os.Getpid()) {
			t.Errorf("%s: header of %q is not <PRI>Mmm dd hh:mm:ss dpfd[%d]: ", c.name, got.raw, os.Getpid())
		}
		want := fmt.Sprintf(`dpfd[%d]: level=%s msg="a message" key="value with spaces" n=7`, os.Getpid(), c.name)
		if got.text != want {
			t.Errorf("%s: logd stores %q, want %q", c.name, got.text, want)
		}
		if strings.Contains(got.raw, " time=") {
			t.Errorf("%s: the time is there twice: %q", c.name, got.raw)
		}
	}
	// Between the levels: a level below debug is debug, above error err.
	for level, want := range map[slog.Level]int{slog.LevelDebug - 4: 31, slog.LevelInfo + 2: 30, slog.LevelWarn + 1: 28, slog.LevelError + 8: 27} {
		if got := Priority(level); got != want {
			t.Errorf("Priority(%v) = %d, want %d", level, got, want)
		}
	}
	if fb.Len() != 0 {
		t.Errorf("lines went to the fallback while the socket was there: %q", fb.String())
	}
}

// TestLevelFilter: the handler logs from the level of its LevelVar, which
// can change while it runs.
func TestLevelFilter(t *testing.T) {
	path := socketPath(t)
	d := startLogd(t, path)
	var level slog.LevelVar
	level.Set(slog.LevelWarn)
	h := New(Options{Path: path, Tag: "dpfd", Level: &level})
	defer h.Close()
	log := slog.New(h).With("component", "test")
	log.Info("filtered out")
	log.Debug("filtered out")
	log.Warn("first")
	if got := d.next(); !strings.Contains(got.text, "msg=first component=test") || got.pri != 28 {
		t.Fatalf("at warn: got %q first, want the warning", got.raw)
	}
	level.Set(slog.LevelDebug)
	log.Debug("now shown")
	if got := d.next(); !strings.Contains(got.text, `msg="now shown"`) || got.pri != 31 {
		t.Fatalf("at debug: got %q, want the debug line", got.raw)
	}
	level.Set(slog.LevelError)
	log.Warn("filtered out")
	log.WithGroup("g").Error("last", "k", 1)
	if got := d.next(); !strings.Contains(got.text, "msg=last component=test g.k=1") || got.pri != 27 {
		t.Fatalf("at error: got %q, want the error", got.raw)
	}
}

// TestFallbackAndRedial: without a syslog socket lines go to the fallback,
// with their time; once the socket is there they go to it; and when the
// log daemon restarts (its socket closed and made again at the same path)
// the next line reaches the new one.
func TestFallbackAndRedial(t *testing.T) {
	path := socketPath(t)
	var fb bytes.Buffer
	h := New(Options{Path: path, Tag: "dpfd", Fallback: &fb})
	defer h.Close()
	log := slog.New(h)

	log.Info("no logd yet", "n", 1)
	if !regexp.MustCompile(`^time=\S+ level=INFO msg="no logd yet" n=1\n$`).MatchString(fb.String()) {
		t.Fatalf("fallback got %q", fb.String())
	}

	d := startLogd(t, path)
	log.Info("logd up", "n", 2)
	if got := d.next(); !strings.HasSuffix(got.text, `msg="logd up" n=2`) {
		t.Fatalf("after logd started: %q", got.raw)
	}

	d.stop()
	d2 := startLogd(t, path)
	log.Warn("logd restarted", "n", 3)
	if got := d2.next(); !strings.HasSuffix(got.text, `msg="logd restarted" n=3`) || got.pri != 28 {
		t.Fatalf("after logd restarted: %q", got.raw)
	}
	if strings.Count(fb.String(), "\n") != 1 {
		t.Fatalf("lines went to the fallback while logd was there: %q", fb.String())
	}

	d2.stop()
	log.Error("logd gone")
	if !strings.Contains(fb.String(), `level=ERROR msg="logd gone"`) {
		t.Fatalf("after logd stopped, fallback got %q", fb.String())
	}
}

// TestConcurrentRecords: records logged at once from many goroutines each
// arrive whole, with their own priority.
func TestConcurrentRecords(t *testing.T) {
	path := socketPath(t)
	d := startLogd(t, path)
	h := New(Options{Path: path, Tag: "dpfd", Level: slog.LevelDebug})
	defer h.Close()
	log := slog.New(h)
	const n = 50
	// Senders block while the socket's queue is full (logd reads as they
	// send), so they run beside the reading.
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%2 == 0 {
				log.Debug("even", "i", i)
			} else {
				log.Error("odd", "i", i)
			}
		}()
	}
	defer wg.Wait()
	seen := map[int]bool{}
	for range n {
		got := d.next()
		var i int
		var kind string
		if _, err := fmt.Sscanf(got.text[strings.Index(got.text, "msg="):], "msg=%s i=%d", &kind, &i); err != nil {
			t.Fatalf("%q: %v", got.raw, err)
		}
		wantPri := 27
		if i%2 == 0 {
			wantPri = 31
		}
		if got.pri != wantPri || seen[i] {
			t.Fatalf("record %d: priority %d (want %d), seen before %v: %q", i, got.pri, wantPri, seen[i], got.raw)
		}
		seen[i] = true
	}
}

// TestStalledLogd: a syslog daemon that stops reading (its queue full)
// does not hold the program up for more than one send's time limit: that
// line and the ones after it go to the fallback.
func TestStalledLogd(t *testing.T) {
	path := socketPath(t)
	startLogd(t, path) // never reads
	var fb bytes.Buffer
	h := New(Options{Path: path, Tag: "dpfd", Fallback: &fb})
	defer h.Close()
	log := slog.New(h)
	const n = 200 // far more than a unix datagram queue holds (sysctl net.unix.max_dgram_qlen)
	for i := range n {
		log.Info("line", "i", i)
	}
	lost := strings.Count(fb.String(), "\n")
	if lost == 0 {
		t.Fatalf("%d lines to a logd that does not read, none in the fallback", n)
	}
	if !strings.Contains(fb.String(), fmt.Sprintf("msg=line i=%d\n", n-1)) {
		t.Fatalf("the last line is not in the fallback: %q", fb.String())
	}
}

// TestDefaults: the default path is /dev/log and the default tag the
// program's name.
func TestDefaults(t *testing.T) {
	h := New(Options{})
	if h.out.path != DefaultPath || h.out.tag != filepath.Base(os.Args[0]) {
		t.Fatalf("path %q tag %q", h.out.path, h.out.tag)
	}
	if err := h.Close(); err != nil {
		t.Fatalf("Close of a handler that never dialled: %v", err)
	}
}
