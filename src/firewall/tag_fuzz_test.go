//go:build linux

package firewall

import "testing"

// FuzzParseTag checks that parseTag, which reads dpfd's rule comments back
// from iptables, never panics and accepts exactly the comments iptTag
// writes (a port with leading zeros aside, which it reads as the number).
// The committed corpus is in testdata/fuzz/FuzzParseTag.
func FuzzParseTag(f *testing.F) {
	f.Add(iptTag(Key{TCP, 8080}))
	f.Add(iptTag(Key{UDP, 65535}))
	f.Add(iptTagPrefix + "tcp:0")
	f.Add(iptTagPrefix + "sctp:80")
	f.Fuzz(func(t *testing.T, s string) {
		k, ok := parseTag(s)
		if !ok {
			return
		}
		if k.ExternalPort == 0 || (k.Proto != TCP && k.Proto != UDP) {
			t.Fatalf("parseTag(%q) = %+v", s, k)
		}
		if again, ok := parseTag(iptTag(k)); !ok || again != k {
			t.Fatalf("parseTag(%q) = %+v does not round-trip: %+v %v", s, k, again, ok)
		}
	})
}
