package lab

import (
	"fmt"
	"net"
	"os"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/testenv"
)

// TestFlushConntrack fills the router's conntrack table with UDP flows from
// the internet host and checks that FlushConntrack empties it.
func TestFlushConntrack(t *testing.T) {
	testenv.RequireRoot(t)
	l, err := New(fmt.Sprintf("dpfct%d", os.Getpid()%100000), 1)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	// A conntrack expression makes the kernel track the namespace's
	// connections.
	for _, cmd := range []string{
		"add table inet ctprobe",
		"add chain inet ctprobe in { type filter hook input priority 0; }",
		"add rule inet ctprobe in ct state new counter",
	} {
		if out, err := l.Output(cmdTimeout, l.Router, "nft", cmd); err != nil {
			t.Fatalf("nft %s: %v: %s", cmd, err, out)
		}
	}
	const flows = 20
	err = In(l.Inet, func() error {
		for p := range flows {
			c, err := net.DialUDP("udp4", &net.UDPAddr{IP: Inet.AsSlice(), Port: 20000 + p},
				&net.UDPAddr{IP: RouterWAN.AsSlice(), Port: 9})
			if err != nil {
				return err
			}
			c.Write([]byte("x"))
			c.Close()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	n, err := ConntrackCount(l.Router)
	for err == nil && n < flows && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
		n, err = ConntrackCount(l.Router)
	}
	if err != nil {
		t.Fatal(err)
	}
	if n < flows {
		t.Fatalf("conntrack holds %d entries after %d flows, want at least %d", n, flows, flows)
	}
	if err := FlushConntrack(l.Router); err != nil {
		t.Fatal(err)
	}
	if n, err = ConntrackCount(l.Router); err != nil || n != 0 {
		t.Fatalf("after the flush conntrack holds %d entries (%v), want 0", n, err)
	}
}
