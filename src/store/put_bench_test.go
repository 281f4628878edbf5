package store

// The cost of one lease write (one fsynced bbolt transaction) on a file on
// disk, at N leases stored:
//
//	go test -run '^$' -bench 'Put' -benchtime 200x ./src/store/

import (
	"fmt"
	"net/netip"
	"path/filepath"
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
// op is the pair (two fsynced transactions).
func BenchmarkPutDelete(b *testing.B) {
	for _, n := range []int{100, 1000, 10000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			s, err := Open(filepath.Join(b.TempDir(), "leases.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			now := time.Now()
			// Fill without fsync: the fill is not what is measured.
			s.db.NoSync = true
			for i := range n {
				if err := s.Put(benchLease(i, now)); err != nil {
					b.Fatal(err)
				}
			}
			s.db.NoSync = false
			extra := benchLease(n, now)
			extra.ExternalPort = 65500
			for b.Loop() {
				if err := s.Put(extra); err != nil {
					b.Fatal(err)
				}
				if err := s.Delete(extra.Key()); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
