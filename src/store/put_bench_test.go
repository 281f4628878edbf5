package store

// The cost of one lease write on a file on disk, at N leases stored: one
// journal record (write + fdatasync), or, as without the journal, one bbolt
// transaction (two fdatasyncs):
//
//	go test -run '^$' -bench 'Put' -benchtime 1000x ./src/store/

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

func benchLease(i int, now time.Time) lease.Lease {
	a := netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + i%200)})
	return lease.Lease{Proto: firewall.TCP, ExternalPort: uint16(1 + i%65000),
		InternalAddr: a, InternalPort: uint16(1 + i%65000), Client: a, Origin: lease.OriginNATPMP,
		Lifetime: time.Hour, Created: now, Renewed: now, Expires: now.Add(time.Hour)}
}

// BenchmarkPutDelete stores one more lease at N stored and deletes it; one
// op is the pair. It reports the p50 and p99 of the single writes.
func BenchmarkPutDelete(b *testing.B) {
	for _, mode := range []string{"journal", "transaction"} {
		for _, n := range []int{100, 1000, 10000} {
			b.Run(fmt.Sprintf("%s/%d", mode, n), func(b *testing.B) {
				s, err := Open(filepath.Join(b.TempDir(), "leases.db"))
				if err != nil {
					b.Fatal(err)
				}
				defer s.Close()
				now := time.Now()
				// Fill the database without fsync: the fill is not
				// what is measured.
				j := s.j
				s.j = nil
				s.db.NoSync = true
				for i := range n {
					if err := s.Put(benchLease(i, now)); err != nil {
						b.Fatal(err)
					}
				}
				s.db.NoSync = false
				if mode == "journal" {
					s.j = j
				} else {
					defer func() { s.j = j }() // for Close
				}
				extra := benchLease(n, now)
				extra.ExternalPort = 65500
				var lat []time.Duration
				for b.Loop() {
					start := time.Now()
					if err := s.Put(extra); err != nil {
						b.Fatal(err)
					}
					mid := time.Now()
					if err := s.Delete(extra.Key()); err != nil {
						b.Fatal(err)
					}
					lat = append(lat, mid.Sub(start), time.Since(mid))
				}
				slices.Sort(lat)
				at := func(q float64) float64 {
					return float64(lat[min(len(lat)-1, int(q*float64(len(lat))))].Microseconds()) / 1000
				}
				b.ReportMetric(at(0.50), "p50-ms")
				b.ReportMetric(at(0.99), "p99-ms")
			})
		}
	}
}
