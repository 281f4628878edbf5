//go:build linux

package firewall

import (
	"fmt"
	"math/rand/v2"
	"testing"
)

// TestNFTablesShadowKernel checks that Add and Remove computed from the
// shadow leave the kernel holding exactly the pinholes a model holds,
// including fwd_pinholes elements shared by two pinholes and filters that
// change, and that a change someone else made is seen (the shadow is not
// trusted across it).
func TestNFTablesShadowKernel(t *testing.T) {
	ns := newNetNS(t)
	fw := newKernelBackend(t, KindNFTables, ns, "wan0").(*nftBackend)
	model := make(map[Key]Pinhole)
	list := func() []Pinhole {
		var ps []Pinhole
		for _, p := range model {
			ps = append(ps, p)
		}
		return ps
	}
	must(t, "Sync", fw.Sync(nil))
	if fw.shadow == nil {
		t.Fatal("no shadow after Sync")
	}
	// Few ports and internal endpoints, so that keys are replaced and
	// fwd_pinholes elements shared often.
	rng := rand.New(rand.NewPCG(1, 2))
	const steps = 300
	for i := range steps {
		p := randomPinhole(rng, 12)
		if rng.IntN(3) == 0 {
			must(t, "Remove", fw.Remove(p.Key()))
			delete(model, p.Key())
		} else {
			must(t, "Add", fw.Add(p))
			model[p.Key()] = p
		}
		if fw.shadow == nil || fw.shadow.len() != len(model) {
			t.Fatalf("step %d: shadow lost or wrong size", i)
		}
		if i%10 == 0 || i == steps-1 {
			wantInstalled(t, fw, list())
			if d, err := fw.Verify(list()); err != nil || !d.Clean() {
				t.Fatalf("step %d: Verify: %v %v", i, d, err)
			}
		}
	}

	// Someone else deletes an element: the generation moves, so the next
	// change reads the kernel and repairs nothing it was not asked to,
	// but installs what it is asked to correctly.
	var victim Pinhole
	for _, p := range model {
		victim = p
		break
	}
	nsRun(t, ns, "nft", "delete", "element", "ip", nftTableName, nftDNATMap(victim.Proto),
		fmt.Sprintf("{ %d }", victim.ExternalPort))
	must(t, "Add after foreign change", fw.Add(victim))
	wantInstalled(t, fw, list())
	must(t, "Remove", fw.Remove(victim.Key()))
	delete(model, victim.Key())
	wantInstalled(t, fw, list())

	// The table flushed away: Add re-creates it.
	nsRun(t, ns, "nft", "flush", "ruleset")
	extra := Pinhole{Proto: UDP, ExternalPort: 3000, InternalAddr: mustAddr("198.51.100.9"), InternalPort: 53}
	must(t, "Add after flush", fw.Add(extra))
	wantInstalled(t, fw, []Pinhole{extra})
}

// TestNFTShadowDiff checks the shared fwd_pinholes element without a
// kernel: it goes with the last pinhole using it, comes with the first.
func TestNFTShadowDiff(t *testing.T) {
	a := Pinhole{Proto: TCP, ExternalPort: 1, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 80}
	b := a
	b.ExternalPort = 2
	s := newNFTShadow(map[Key]Pinhole{a.Key(): a}, 7)
	del, add, ok := s.diff(b.Key(), &b)
	if !ok || len(add[nftSetForward]) != 0 || len(add[nftDNATMap(TCP)]) != 1 || len(del[nftDNATMap(TCP)]) != 0 {
		t.Fatalf("add shared: del %v add %v ok %v", del, add, ok)
	}
	s.apply(b.Key(), &b)
	if del, _, _ := s.diff(a.Key(), nil); len(del[nftSetForward]) != 0 {
		t.Fatalf("remove one of two sharing: del %v", del)
	}
	s.apply(a.Key(), nil)
	if del, _, _ := s.diff(b.Key(), nil); len(del[nftSetForward]) != 1 {
		t.Fatalf("remove the last: del %v", del)
	}
	if _, _, ok := s.diff(b.Key(), &b); ok {
		t.Fatal("re-adding the same pinhole is a change")
	}
	if _, _, ok := s.diff(a.Key(), nil); ok {
		t.Fatal("removing an absent pinhole is a change")
	}
}
