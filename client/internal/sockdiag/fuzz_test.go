package sockdiag

import (
	"encoding/hex"
	"reflect"
	"testing"
)

// FuzzParseMessages checks that any input decodes without panicking and that
// every socket decoded re-encodes to the same socket.
func FuzzParseMessages(f *testing.F) {
	for _, h := range []string{capTCP4, capTCP6, capUDP4, capUDP6, capDone, capTCP6 + capDone} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		socks, _, _ := parseMessages(b, 7, ProtoTCP, le)
		for _, s := range socks {
			again, _, err := parseMessages(appendMsg(nil, s, 7), 7, ProtoTCP, le)
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], s) {
				t.Fatalf("round trip of %+v: %+v, %v", s, again, err)
			}
		}
	})
}
