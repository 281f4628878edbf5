package client

import (
	"encoding/binary"
	"errors"
	"testing"
)

// FuzzParseRoute checks that parseRoute never panics on any /proc/net/route
// text and returns either an IPv4 gateway or an error wrapping
// ErrNoGateway. The committed corpus is in testdata/fuzz/FuzzParseRoute.
func FuzzParseRoute(f *testing.F) {
	f.Add([]byte("Iface\tDestination\tGateway \tFlags\tRefCnt\tUse\tMetric\tMask\t\tMTU\tWindow\tIRTT\n" +
		"eth0\t00000000\t016433C6\t0003\t0\t0\t100\t00000000\t0\t0\t0\n" +
		"eth0\t006433C6\t00000000\t0001\t0\t0\t100\t00FFFFFF\t0\t0\t0\n"))
	f.Add([]byte("h\neth0 00000000 016433C6 0003 0 0 1 00000000\neth1 00000000 026433C6 0003 0 0 0 00000000\n"))
	f.Add([]byte(""))
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			gw, err := parseRoute(data, order)
			if err != nil {
				if !errors.Is(err, ErrNoGateway) || gw.IsValid() {
					t.Fatalf("parseRoute = %v, %v; want an error wrapping ErrNoGateway and no address", gw, err)
				}
				continue
			}
			if !gw.Is4() || gw.IsUnspecified() {
				t.Fatalf("parseRoute returned gateway %v", gw)
			}
		}
	})
}
