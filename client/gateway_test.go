package client

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"testing"
)

func TestParseRoute(t *testing.T) {
	const header = "Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n"
	captured, err := os.ReadFile("testdata/proc-net-route")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		data  string
		order binary.ByteOrder
		want  string // "" for ErrNoGateway
	}{
		{"captured, lowest metric wins", string(captured), binary.LittleEndian, "192.0.2.1"},
		{"single default route", header +
			"eth0\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", binary.LittleEndian, "192.0.2.1"},
		{"big-endian host", header +
			"eth0\t00000000\tC0000201\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", binary.BigEndian, "192.0.2.1"},
		{"lower metric later", header +
			"eth0\t00000000\t016433C6\t0003\t0\t0\t600\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\t010200C0\t0003\t0\t0\t100\t00000000\t0\t0\t0\n", binary.LittleEndian, "192.0.2.1"},
		{"equal metric, first wins", header +
			"eth0\t00000000\t016433C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth1\t00000000\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", binary.LittleEndian, "198.51.100.1"},
		{"route down", header +
			"eth0\t00000000\t010200C0\t0002\t0\t0\t0\t00000000\t0\t0\t0\n", binary.LittleEndian, ""},
		{"default route without gateway (point-to-point)", header +
			"ppp0\t00000000\t00000000\t0001\t0\t0\t0\t00000000\t0\t0\t0\n", binary.LittleEndian, ""},
		{"not a default route", header +
			"eth0\t000200C0\t010200C0\t0003\t0\t0\t0\t00FFFFFF\t0\t0\t0\n", binary.LittleEndian, ""},
		{"malformed lines skipped", header +
			"eth0\tzz\t010200C0\t0003\t0\t0\t0\t00000000\t0\t0\t0\n" +
			"eth0\t00000000\n" +
			"eth1\t00000000\t016433C6\t0003\t0\t0\t0\t00000000\t0\t0\t0\n", binary.LittleEndian, "198.51.100.1"},
		{"header only", header, binary.LittleEndian, ""},
		{"empty", "", binary.LittleEndian, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parseRoute([]byte(tt.data), tt.order)
			if tt.want == "" {
				if !errors.Is(err, ErrNoGateway) {
					t.Fatalf("parseRoute = %v, %v; want ErrNoGateway", got, err)
				}
				return
			}
			if err != nil || got != netip.MustParseAddr(tt.want) {
				t.Fatalf("parseRoute = %v, %v; want %s", got, err, tt.want)
			}
		})
	}
}

func TestGatewayDiscovery(t *testing.T) {
	c, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.discover = func() (netip.Addr, error) { return netip.MustParseAddr("192.0.2.1"), nil }
	gw, err := c.Gateway(t.Context())
	if err != nil || gw != netip.MustParseAddrPort("192.0.2.1:5351") {
		t.Fatalf("Gateway = %v, %v; want 192.0.2.1:5351", gw, err)
	}
	c.discover = func() (netip.Addr, error) { return parseRoute(nil, binary.LittleEndian) }
	if _, err := c.Gateway(t.Context()); !errors.Is(err, ErrNoGateway) {
		t.Fatalf("Gateway without a default route = %v; want ErrNoGateway", err)
	}
	if _, err := c.Map(t.Context(), MapRequest{Protocol: TCP, InternalPort: 80}); !errors.Is(err, ErrNoGateway) {
		t.Fatalf("Map without a default route = %v; want ErrNoGateway", err)
	}
}
