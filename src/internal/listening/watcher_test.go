package listening

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock/clocktest"
	"github.com/dpf-router/dpf/src/firewall"
)

// captureDir copies the captured tables to a temporary directory, in the
// byte order of the machine running the test (Watcher reads native order).
func captureDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		es, err := Parse(readCapture(t, name), binary.LittleEndian)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), format(es, binary.NativeEndian), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

var wan = netip.MustParseAddr("203.0.113.1")

// TestWatcherCaptured: with the captured tables (see testdata/README.md),
// wildcard listeners and those on the WAN address count; loopback, other
// addresses and connected sockets do not.
func TestWatcherCaptured(t *testing.T) {
	dir := captureDir(t)
	w := New(Config{Dir: dir, Addrs: func() []netip.Addr { return []netip.Addr{wan} }})
	for _, tt := range []struct {
		proto firewall.Proto
		port  uint16
		want  bool
	}{
		{firewall.TCP, 22, true},     // 0.0.0.0:22
		{firewall.TCP, 443, true},    // [::]:443
		{firewall.TCP, 8080, true},   // 203.0.113.1:8080, the WAN address
		{firewall.TCP, 5000, false},  // loopback only
		{firewall.TCP, 8443, false},  // another address (2001:db8::1)
		{firewall.UDP, 53, true},     // 0.0.0.0:53
		{firewall.UDP, 68, true},     // 203.0.113.1:68
		{firewall.UDP, 5353, true},   // [::]:5353
		{firewall.UDP, 123, true},    // [::ffff:203.0.113.1]:123
		{firewall.UDP, 40000, false}, // connected UDP socket
		{firewall.UDP, 22, false},    // TCP only
		{firewall.TCP, 53, false},    // UDP only
	} {
		if got := w.Listening(tt.proto, tt.port); got != tt.want {
			t.Errorf("Listening(%s, %d) = %v, want %v", tt.proto, tt.port, got, tt.want)
		}
	}
	// Without WAN addresses only the wildcard sockets count.
	w = New(Config{Dir: dir})
	if w.Listening(firewall.TCP, 8080) || w.Listening(firewall.UDP, 68) || !w.Listening(firewall.TCP, 22) {
		t.Error("Addrs nil: only wildcard sockets should count")
	}
}

// TestWatcherCachesAndKeepsLastReading: the tables are read again only after
// MaxAge; a missing IPv6 table is no error, and a table that cannot be read
// keeps its previous reading.
func TestWatcherCachesAndKeepsLastReading(t *testing.T) {
	dir := captureDir(t)
	clk := clocktest.NewFake(time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC))
	w := New(Config{Dir: dir, Clock: clk})
	if !w.Listening(firewall.TCP, 22) {
		t.Fatal("port 22 not seen")
	}
	// The listener on 22 goes away: still cached until MaxAge passed.
	empty := "  sl  local_address rem_address   st\n"
	if err := os.WriteFile(filepath.Join(dir, "tcp"), []byte(empty), 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMaxAge / 2)
	if !w.Listening(firewall.TCP, 22) {
		t.Fatal("reading not reused within MaxAge")
	}
	clk.Advance(DefaultMaxAge)
	if w.Listening(firewall.TCP, 22) {
		t.Fatal("port 22 still reported after it closed and MaxAge passed")
	}
	// No IPv6: tcp6 missing is fine, and [::]:443 goes with it.
	if err := os.Remove(filepath.Join(dir, "tcp6")); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMaxAge)
	if w.Listening(firewall.TCP, 443) {
		t.Fatal("port 443 reported after tcp6 went away")
	}
	// A broken udp table keeps the previous reading of it.
	if err := os.WriteFile(filepath.Join(dir, "udp"), []byte("garbage\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	clk.Advance(DefaultMaxAge)
	if !w.Listening(firewall.UDP, 53) {
		t.Fatal("unreadable udp table dropped the previous reading")
	}
}

// TestWatcherLive reads this process's own tables with a UDP and a TCP
// socket open on the wildcard address (loopback traffic only; no
// namespace needed).
func TestWatcherLive(t *testing.T) {
	ln, err := net.Listen("tcp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	w := New(Config{})
	tport := uint16(ln.Addr().(*net.TCPAddr).Port)
	uport := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	if !w.Listening(firewall.TCP, tport) {
		t.Errorf("own TCP listener on %d not seen", tport)
	}
	if !w.Listening(firewall.UDP, uport) {
		t.Errorf("own UDP socket on %d not seen", uport)
	}
}
