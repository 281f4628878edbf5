package agent

import (
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/dpf-router/dpf/client/internal/sockdiag"
)

func TestDecide(t *testing.T) {
	h := host{
		isLocal:   func(a netip.Addr) bool { return a == netip.MustParseAddr("192.0.2.10") },
		ephemeral: [2]uint16{32768, 60999},
	}
	const (
		v4, v6      = sockdiag.AFInet, sockdiag.AFInet6
		tcp, udp    = sockdiag.ProtoTCP, sockdiag.ProtoUDP
		listen      = sockdiag.StateListen
		unconnected = sockdiag.StateClose
		established = sockdiag.StateEstablished
	)
	sock := func(fam, proto, state uint8, local string) sockdiag.Socket {
		s := sockdiag.Socket{Family: fam, Protocol: proto, State: state, Local: netip.MustParseAddrPort(local)}
		if fam == v4 {
			s.Remote = netip.MustParseAddrPort("0.0.0.0:0")
		} else {
			s.Remote = netip.MustParseAddrPort("[::]:0")
			s.HasV6Only = true
		}
		return s
	}
	v6only := sock(v6, tcp, listen, "[::]:8080")
	v6only.V6Only = true
	connected := sock(v4, udp, established, "0.0.0.0:5000")
	connected.Remote = netip.MustParseAddrPort("198.51.100.1:53")

	tests := []struct {
		name      string
		s         sockdiag.Socket
		announced bool
		wantMap   bool
	}{
		{"tcp any", sock(v4, tcp, listen, "0.0.0.0:8080"), false, true},
		{"tcp dual-stack", sock(v6, tcp, listen, "[::]:8080"), false, true},
		{"tcp v6only", v6only, true, false},
		{"tcp v4-mapped any", sock(v6, tcp, listen, "[::ffff:0.0.0.0]:8080"), false, true},
		{"tcp v4-mapped local", sock(v6, tcp, listen, "[::ffff:192.0.2.10]:8080"), false, true},
		{"tcp v4-mapped loopback", sock(v6, tcp, listen, "[::ffff:127.0.0.1]:8080"), true, false},
		{"tcp host address", sock(v4, tcp, listen, "192.0.2.10:8080"), false, true},
		{"tcp foreign address", sock(v4, tcp, listen, "192.0.2.99:8080"), true, false},
		{"tcp loopback", sock(v4, tcp, listen, "127.0.0.1:8080"), true, false},
		{"tcp loopback 127.0.0.53", sock(v4, tcp, listen, "127.0.0.53:53"), true, false},
		{"tcp v6 loopback", sock(v6, tcp, listen, "[::1]:8080"), true, false},
		{"tcp v6 global", sock(v6, tcp, listen, "[2001:db8::1]:8080"), true, false},
		{"tcp not listening", sock(v4, tcp, established, "0.0.0.0:8080"), true, false},
		{"udp any", sock(v4, udp, unconnected, "0.0.0.0:5000"), false, true},
		{"udp connected", connected, true, false},
		{"udp multicast", sock(v4, udp, unconnected, "224.0.0.251:5353"), true, false},
		{"udp broadcast", sock(v4, udp, unconnected, "255.255.255.255:67"), true, false},
		{"udp ephemeral polled", sock(v4, udp, unconnected, "0.0.0.0:40000"), false, false},
		{"udp ephemeral announced", sock(v4, udp, unconnected, "0.0.0.0:40000"), true, true},
		{"udp range edge low", sock(v4, udp, unconnected, "0.0.0.0:32767"), false, true},
		{"udp range edge high", sock(v4, udp, unconnected, "0.0.0.0:61000"), false, true},
		{"tcp ephemeral polled", sock(v4, tcp, listen, "0.0.0.0:40000"), false, true},
		{"udp dual-stack", sock(v6, udp, unconnected, "[::]:5000"), false, true},
		{"port 0", sock(v4, tcp, listen, "0.0.0.0:0"), true, false},
		{"sctp", sock(v4, 132, listen, "0.0.0.0:80"), true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			key, reason := decide(tt.s, tt.announced, h)
			if got := reason == ""; got != tt.wantMap {
				t.Errorf("decide(%+v, %v) = %v %q, want map=%v", tt.s, tt.announced, key, reason, tt.wantMap)
			}
			if reason == "" && (key.port != tt.s.Local.Port() || key.proto != protoName(tt.s.Protocol)) {
				t.Errorf("key %v for %v", key, tt.s.Local)
			}
		})
	}
	// The key carries a specific address, unmapped, and no wildcard.
	for _, tt := range []struct {
		s    sockdiag.Socket
		addr string
	}{
		{sock(v4, tcp, listen, "0.0.0.0:8080"), ""},
		{sock(v6, tcp, listen, "[::]:8080"), ""},
		{sock(v6, tcp, listen, "[::ffff:0.0.0.0]:8080"), ""},
		{sock(v4, tcp, listen, "192.0.2.10:8080"), "192.0.2.10"},
		{sock(v6, udp, unconnected, "[::ffff:192.0.2.10]:5000"), "192.0.2.10"},
	} {
		key, reason := decide(tt.s, true, h)
		var want netip.Addr
		if tt.addr != "" {
			want = netip.MustParseAddr(tt.addr)
		}
		if reason != "" || key.addr != want {
			t.Errorf("decide(%v) = %v %q, want address %v", tt.s.Local, key, reason, want)
		}
	}
	if _, reason := decide(v6only, false, h); reason != reasonV6Only {
		t.Errorf("v6only reason %q", reason)
	}
	// LAN discovery ports: never mapped, announced or not, unless allowed;
	// TCP on the same numbers is not discovery.
	for _, p := range []uint16{137, 138, 1900, 3702, 5353, 5355} {
		s := sock(v4, udp, unconnected, "0.0.0.0:"+strconv.Itoa(int(p)))
		if _, reason := decide(s, true, h); !strings.HasPrefix(reason, reasonDiscovery) {
			t.Errorf("udp/%d: reason %q, want a discovery port", p, reason)
		}
		allow := h
		allow.allowDiscovery = true
		if _, reason := decide(s, true, allow); reason != "" {
			t.Errorf("udp/%d allowed: reason %q", p, reason)
		}
		if _, reason := decide(sock(v4, tcp, listen, "0.0.0.0:"+strconv.Itoa(int(p))), true, h); reason != "" {
			t.Errorf("tcp/%d: reason %q", p, reason)
		}
	}
	if _, reason := decide(sock(v4, udp, unconnected, "192.0.2.10:5353"), true, h); !strings.HasPrefix(reason, reasonDiscovery) {
		t.Errorf("udp/5353 on the host address: reason %q", reason)
	}
	// Without the host's addresses a specific address is not mapped.
	if _, reason := decide(sock(v4, tcp, listen, "192.0.2.10:80"), true, host{}); reason == "" {
		t.Error("mapped an address with no host information")
	}
}
