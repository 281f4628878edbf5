package server

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/internal/testenv"
)

// steerNS makes a network namespace holding addrs on its loopback device
// and removes it when the test ends.
func steerNS(t *testing.T, addrs []netip.Addr) string {
	t.Helper()
	testenv.RequireRoot(t)
	ns := fmt.Sprintf("dpfsteer%d", os.Getpid()%100000)
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	ip("netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")
	for _, a := range addrs {
		ip("-n", ns, "addr", "add", a.String()+"/32", "dev", "lo")
	}
	return ns
}

// TestSteeringBySource: the sockets of one listening address share the
// datagrams by source address, so each source always reaches the same
// socket, the one its address selects, and sources of different classes
// reach different sockets.
func TestSteeringBySource(t *testing.T) {
	server := netip.MustParseAddr("192.0.2.1")
	var clients []netip.Addr
	for i := range 2 * steerSockets {
		clients = append(clients, netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i)}))
	}
	ns := steerNS(t, append([]netip.Addr{server}, clients...))
	s := New(Config{})
	const port = 5351 // in a namespace of its own
	var sk *socket
	if err := lab.In(ns, func() error {
		var err error
		sk, err = s.listenGroup(context.Background(), netip.AddrPortFrom(server, port), "")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sk.close()
	conns := sk.conns()
	if len(conns) != steerSockets {
		t.Fatalf("%d sockets, want %d (steering unavailable?)", len(conns), steerSockets)
	}

	const perClient = 3
	for _, c := range clients {
		if err := lab.In(ns, func() error {
			u, err := net.DialUDP("udp4", &net.UDPAddr{IP: c.AsSlice()}, &net.UDPAddr{IP: server.AsSlice(), Port: port})
			if err != nil {
				return err
			}
			defer u.Close()
			for range perClient {
				if _, err := u.Write([]byte("x")); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	got := map[netip.Addr]map[int]int{}
	buf := make([]byte, 64)
	for i, conn := range conns {
		for {
			conn.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			_, from, err := conn.ReadFromUDPAddrPort(buf)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
			a := from.Addr().Unmap()
			if got[a] == nil {
				got[a] = map[int]int{}
			}
			got[a][i]++
		}
	}
	for _, c := range clients {
		want := int(binary.BigEndian.Uint32(c.AsSlice()) % steerSockets)
		if len(got[c]) != 1 || got[c][want] != perClient {
			t.Errorf("datagrams from %s arrived on sockets %v, want all %d on socket %d", c, got[c], perClient, want)
		}
	}
}
