//go:build linux

package firewall

// The cost of one map (Add) and one delete (Remove) as the number of
// installed pinholes grows, on a real kernel in a throwaway namespace:
//
//	go test -run '^$' -bench 'AddRemove' -benchtime 200x ./src/firewall/
//
// The cost must stay flat in N: dpfd calls Add for every map request.

import (
	"fmt"
	"net/netip"
	"testing"
)

// benchSizes are the numbers of installed pinholes measured.
var benchSizes = []int{100, 1000, 10000}

// BenchmarkAddRemove adds one pinhole to N installed ones and removes it
// again; one op is that pair. "plain" has no filter, "filtered" one (its
// allow element goes into an interval set, whose commit the kernel pays by
// the set's size).
func BenchmarkAddRemove(b *testing.B) {
	for _, kind := range []string{KindNFTables} {
		for _, n := range benchSizes {
			for _, filtered := range []bool{false, true} {
				name := fmt.Sprintf("%s-%d-plain", kind, n)
				if filtered {
					name = fmt.Sprintf("%s-%d-filtered", kind, n)
				}
				b.Run(name, func(b *testing.B) {
					fw := newKernelBackend(b, kind, newNetNS(b), "wan0")
					must(b, "Sync", fw.Sync(manyPinholes(n)))
					extra := Pinhole{Proto: TCP, ExternalPort: 1000,
						InternalAddr: netip.MustParseAddr("198.51.100.250"), InternalPort: 4242}
					if filtered {
						extra.Filters = []Filter{{Prefix: mustPrefix("203.0.113.0/28")}}
					}
					loop(b, func() {
						must(b, "Add", fw.Add(extra))
						must(b, "Remove", fw.Remove(extra.Key()))
					})
				})
			}
		}
	}
}

// BenchmarkIPTablesAddRemove is BenchmarkAddRemove for the iptables
// backend (iptables-nft, and iptables-legacy first in $PATH), kept apart
// because installing 10,000 pinholes takes iptables a while:
//
//	go test -run '^$' -bench 'IPTablesAddRemove' -benchtime 20x ./src/firewall/
func BenchmarkIPTablesAddRemove(b *testing.B) {
	for _, kind := range []string{KindIPTables, "iptables-legacy"} {
		for _, n := range benchSizes {
			b.Run(fmt.Sprintf("%s-%d", kind, n), func(b *testing.B) {
				ns := newNetNS(b)
				if kind == "iptables-legacy" {
					useLegacy(b)
				}
				fw := newKernelBackend(b, KindIPTables, ns, "wan0")
				must(b, "Sync", fw.Sync(manyPinholes(n)))
				extra := Pinhole{Proto: TCP, ExternalPort: 1000,
					InternalAddr: netip.MustParseAddr("198.51.100.250"), InternalPort: 4242}
				loop(b, func() {
					must(b, "Add", fw.Add(extra))
					must(b, "Remove", fw.Remove(extra.Key()))
				})
			})
		}
	}
}
