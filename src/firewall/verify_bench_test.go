//go:build linux

package firewall

// The cost of self-healing checks at scale, in a throwaway namespace:
//
//	go test -run '^$' -bench 'Unchanged|Verify' -benchtime 2s ./src/firewall/
//
// dpfd calls Unchanged once a second (and after each notification);
// Verify only when Unchanged cannot vouch for the state.

import (
	"fmt"
	"net/netip"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the CPU time (user and system) used so far by this process
// and by its waited-for children (the iptables commands).
func cpuTime(b *testing.B) time.Duration {
	var total time.Duration
	for _, who := range []int{syscall.RUSAGE_SELF, syscall.RUSAGE_CHILDREN} {
		var ru syscall.Rusage
		if err := syscall.Getrusage(who, &ru); err != nil {
			b.Fatal(err)
		}
		total += time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	}
	return total
}

// loop runs f b.N times and reports the CPU time per call beside the wall
// time (which includes waiting for the kernel and child processes).
func loop(b *testing.B, f func()) {
	start := cpuTime(b)
	n := 0
	for b.Loop() {
		f()
		n++
	}
	b.ReportMetric(float64(cpuTime(b)-start)/float64(n), "cpu-ns/op")
}

// benchPinholes is the lease count the issue asks the periodic check to be
// measured at.
const benchPinholes = 4000

func manyPinholes(n int) []Pinhole {
	ps := make([]Pinhole, 0, n)
	for i := range n {
		p := Pinhole{Proto: TCP, ExternalPort: uint16(10000 + i),
			InternalAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + i%200)}), InternalPort: uint16(1024 + i)}
		if i%2 == 1 {
			p.Proto = UDP
		}
		if i%20 == 0 {
			p.Filters = []Filter{{Prefix: mustPrefix("203.0.113.0/24")}}
		}
		ps = append(ps, p)
	}
	return ps
}

// benchKinds are the backends measured; "iptables-legacy" is the iptables
// backend with iptables-legacy first in $PATH.
var benchKinds = []string{KindNFTables, KindIPTables, "iptables-legacy"}

func benchBackend(b *testing.B, kind string) (Backend, Verifier, []Pinhole) {
	ns := newNetNS(b)
	if kind == "iptables-legacy" {
		useLegacy(b)
		kind = KindIPTables
	}
	fw := newKernelBackend(b, kind, ns, "wan0")
	ps := manyPinholes(benchPinholes)
	must(b, "Sync", fw.Sync(ps))
	v := fw.(Verifier)
	if d, err := v.Verify(ps); err != nil || !d.Clean() {
		b.Fatalf("Verify: %v %v", d, err)
	}
	return fw, v, ps
}

// BenchmarkUnchanged is the periodic check when nothing changed. On
// iptables-legacy the check gives way to a Verify once a minute (see
// legacyGen), which a run that crosses a minute includes, as dpfd would.
func BenchmarkUnchanged(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(fmt.Sprintf("%s-%d", kind, benchPinholes), func(b *testing.B) {
			_, v, ps := benchBackend(b, kind)
			verifies := 0
			loop(b, func() {
				if !v.Unchanged(len(ps)) {
					verifies++
					if d, err := v.Verify(ps); err != nil || !d.Clean() || verifies > 2 {
						b.Fatalf("not unchanged (%d times): %v %v", verifies, d, err)
					}
				}
			})
		})
	}
}

// BenchmarkVerify is the full comparison, after someone else's commit or
// on iptables-legacy at every check.
func BenchmarkVerify(b *testing.B) {
	for _, kind := range benchKinds {
		b.Run(fmt.Sprintf("%s-%d", kind, benchPinholes), func(b *testing.B) {
			_, v, ps := benchBackend(b, kind)
			loop(b, func() {
				if d, err := v.Verify(ps); err != nil || !d.Clean() {
					b.Fatalf("Verify: %v %v", d, err)
				}
			})
		})
	}
}
