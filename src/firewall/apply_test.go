//go:build linux

package firewall

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestApplyKernel checks Apply against a model on the real kernel, for both
// backends: random batches of removals and additions (keys replaced, forward
// elements shared by two pinholes, filters that come and go) must leave the
// kernel holding exactly what the model holds, and a batch after someone
// else's change must still come out right.
func TestApplyKernel(t *testing.T) {
	for _, kind := range []string{KindNFTables, KindIPTables} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetNS(t)
			fw := newKernelBackend(t, kind, ns, "wan0")
			must(t, "Init", fw.Init())
			must(t, "Sync", fw.Sync(nil))
			model := make(map[Key]Pinhole)
			list := func() []Pinhole {
				var ps []Pinhole
				for _, p := range model {
					ps = append(ps, p)
				}
				return ps
			}
			rng := rand.New(rand.NewPCG(3, 4))
			random := func() Pinhole { return randomPinhole(rng, 16) }
			const batches = 60
			for i := range batches {
				var add []Pinhole
				var remove []Key
				added := map[Key]bool{}
				for range 1 + rng.IntN(8) {
					p := random()
					if rng.IntN(3) == 0 {
						remove = append(remove, p.Key())
					} else if !added[p.Key()] {
						added[p.Key()] = true
						add = append(add, p)
					}
				}
				must(t, "Apply", fw.Apply(add, remove))
				for _, k := range remove {
					delete(model, k)
				}
				for _, p := range add {
					model[p.Key()] = p
				}
				// nftables: the batch went through the shadow, which
				// must stay trusted and in step.
				if nb, ok := fw.(*nftBackend); ok && (nb.shadow == nil || nb.shadow.len() != len(model)) {
					t.Fatalf("batch %d: shadow lost or wrong size", i)
				}
				if i%6 == 0 || i == batches-1 {
					wantInstalled(t, fw, list())
				}
				if i == batches/2 {
					// Someone else empties dpfd's chains or sets: the
					// next batch must not trust what it remembers.
					if kind == KindNFTables {
						nsRun(t, ns, "nft", "flush", "ruleset")
					} else {
						nsRun(t, ns, "iptables", "-t", "nat", "-F", iptChainNAT)
					}
					must(t, "Sync after foreign change", fw.Sync(list()))
					wantInstalled(t, fw, list())
				}
			}
			// A batch straight after a foreign deletion, without a Sync.
			var victim Pinhole
			for _, p := range model {
				victim = p
				break
			}
			if victim.ExternalPort != 0 {
				if kind == KindNFTables {
					nsRun(t, ns, "nft", "delete", "element", "ip", nftTableName, nftDNATMap(victim.Proto),
						fmt.Sprintf("{ %d }", victim.ExternalPort))
				} else {
					nat, _ := iptRules(victim)
					args := append([]string{"iptables", "-t", "nat", "-D", iptChainNAT}, nat...)
					nsRun(t, ns, args[0], args[1:]...)
				}
				extra := Pinhole{Proto: UDP, ExternalPort: 3000, InternalAddr: mustAddr("198.51.100.9"), InternalPort: 53}
				must(t, "Apply after foreign deletion", fw.Apply([]Pinhole{victim, extra}, nil))
				model[extra.Key()] = extra
				wantInstalled(t, fw, list())
			}
			// Bad input is refused before anything changes.
			bad := Pinhole{Proto: TCP, ExternalPort: 0, InternalAddr: mustAddr("198.51.100.9"), InternalPort: 53}
			if err := fw.Apply([]Pinhole{bad}, nil); err == nil {
				t.Fatal("Apply accepted external port 0")
			}
			wantInstalled(t, fw, list())
		})
	}
}

// randomPinhole returns a pinhole on one of ports external ports, to one of
// few internal endpoints (so that keys are replaced and fwd_pinholes
// elements shared often), a third of them with a filter.
func randomPinhole(rng *rand.Rand, ports int) Pinhole {
	p := Pinhole{Proto: TCP, ExternalPort: uint16(2000 + rng.IntN(ports)),
		InternalAddr: netip.AddrFrom4([4]byte{198, 51, 100, byte(2 + rng.IntN(2))}),
		InternalPort: uint16(80 + rng.IntN(2))}
	if rng.IntN(2) == 0 {
		p.Proto = UDP
	}
	if rng.IntN(3) == 0 {
		p.Filters = []Filter{{Prefix: mustPrefix(fmt.Sprintf("203.0.113.%d/32", rng.IntN(4)))}}
	}
	return p
}
