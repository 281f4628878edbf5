//go:build linux

package lease_test

// The cost of one map and one delete as leases grow, with the real bbolt
// store (a file on disk, fsynced) and the real nftables backend in a
// throwaway network namespace:
//
//	go test -run '^$' -bench 'MapDelete|Restart' -benchtime 100x ./src/lease/

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/internal/testenv"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/store"
)

var benchSizes = []int{100, 1000, 10000}

var benchNS atomic.Int64

// benchNetNS creates a network namespace for b and deletes it afterwards.
func benchNetNS(b testing.TB) string {
	b.Helper()
	testenv.RequireRoot(b)
	name := fmt.Sprintf("dpflb-%d-%d", os.Getpid(), benchNS.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		b.Fatalf("ip netns add: %v: %s", err, out)
	}
	b.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			b.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	return name
}

// benchLeases returns n leases spread over 200 LAN hosts.
func benchLeases(n int, now time.Time) []lease.Lease {
	ls := make([]lease.Lease, n)
	for i := range ls {
		ls[i] = lease.Lease{
			Proto: firewall.TCP, ExternalPort: uint16(20000 + i),
			InternalAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + i%200)}), InternalPort: uint16(20000 + i),
			Origin: lease.OriginNATPMP, Lifetime: time.Hour, Created: now, Renewed: now, Expires: now.Add(time.Hour),
		}
		ls[i].Client = ls[i].InternalAddr
		if i%2 == 1 {
			ls[i].Proto = firewall.UDP
		}
	}
	return ls
}

type benchRig struct {
	m  *lease.Manager
	fw firewall.Backend
	st *store.Store
}

// newBenchRig opens a store in a fresh directory on disk and an nftables
// backend in a fresh namespace, and a manager on them holding n leases
// (restored, not stored: the store's size does not change a commit's
// cost much, the firewall's did).
func newBenchRig(b testing.TB, n int) *benchRig {
	ns := benchNetNS(b)
	fw, err := firewall.New(firewall.KindNFTables, firewall.Config{WANInterface: "wan0", NetNS: ns})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { fw.Close() })
	st, err := store.Open(filepath.Join(b.TempDir(), "leases.db"))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { st.Close() })
	m := lease.New(lease.Config{
		MinLifetime: time.Minute, MaxLifetime: 2 * time.Hour,
		MaxPerHost: n + 10, MaxLeases: n + 10,
		Policy: defaultPolicy(), Firewall: fw, Store: st,
	})
	if _, _, err := m.Restore(benchLeases(n, time.Now())); err != nil {
		b.Fatal(err)
	}
	if err := fw.Init(); err != nil {
		b.Fatal(err)
	}
	if err := m.SyncFirewall(); err != nil {
		b.Fatal(err)
	}
	return &benchRig{m: m, fw: fw, st: st}
}

// BenchmarkMapDelete maps one more port at N leases and deletes it; one op
// is the pair (two fsynced transactions, two nftables commits).
func BenchmarkMapDelete(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := newBenchRig(b, n)
			req := lease.Request{Origin: lease.OriginNATPMP, Proto: firewall.TCP,
				Client: hostA, InternalAddr: hostA, InternalPort: 4242, Lifetime: time.Hour}
			for b.Loop() {
				if _, err := r.m.Map(req); err != nil {
					b.Fatal(err)
				}
				del := req
				del.Lifetime = 0
				if _, err := r.m.Map(del); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkRestart is what dpfd does at start with N leases stored: load
// them from the store, restore the table and sync the firewall (Init and
// SyncFirewall into a table that already holds the rules, as after a
// daemon restart). One op is the whole restart.
func BenchmarkRestart(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			ns := benchNetNS(b)
			path := filepath.Join(b.TempDir(), "leases.db")
			st, err := store.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			now := time.Now()
			for _, l := range benchLeases(n, now) {
				if err := st.Put(l); err != nil {
					b.Fatal(err)
				}
			}
			st.Close()
			for b.Loop() {
				st, err := store.Open(path)
				if err != nil {
					b.Fatal(err)
				}
				fw, err := firewall.New(firewall.KindNFTables, firewall.Config{WANInterface: "wan0", NetNS: ns})
				if err != nil {
					b.Fatal(err)
				}
				m := lease.New(lease.Config{MinLifetime: time.Minute, MaxLifetime: 2 * time.Hour,
					MaxPerHost: n + 10, MaxLeases: n + 10, Policy: defaultPolicy(), Firewall: fw, Store: st})
				if err := fw.Init(); err != nil {
					b.Fatal(err)
				}
				ls, _, err := st.Load()
				if err != nil {
					b.Fatal(err)
				}
				if restored, _, err := m.Restore(ls); err != nil || restored != n {
					b.Fatalf("restored %d of %d: %v", restored, n, err)
				}
				if err := m.SyncFirewall(); err != nil {
					b.Fatal(err)
				}
				// The heap that stays: what RSS cannot go below.
				runtime.GC()
				var ms runtime.MemStats
				runtime.ReadMemStats(&ms)
				b.ReportMetric(float64(ms.HeapAlloc), "live-heap-B")
				runtime.KeepAlive(m)
				fw.Close()
				st.Close()
			}
		})
	}
}

// BenchmarkMapLatency reports the latency distribution of single map
// requests at N leases, one at a time (each followed by its delete), on
// the real store and kernel: the part of the benchmark's sequential p99
// that is dpfd's own, without the network and the load generator.
func BenchmarkMapLatency(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			r := newBenchRig(b, n)
			req := lease.Request{Origin: lease.OriginNATPMP, Proto: firewall.TCP,
				Client: hostA, InternalAddr: hostA, InternalPort: 4242, Lifetime: time.Hour}
			del := req
			del.Lifetime = 0
			var lat []time.Duration
			for b.Loop() {
				start := time.Now()
				if _, err := r.m.Map(req); err != nil {
					b.Fatal(err)
				}
				lat = append(lat, time.Since(start))
				if _, err := r.m.Map(del); err != nil {
					b.Fatal(err)
				}
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
