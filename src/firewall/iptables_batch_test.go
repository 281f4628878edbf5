//go:build linux

package firewall

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

// newShadowedFake returns the iptables backend on a fake whose generation
// counts commits as iptables-nft's does, with samplePinholes synced.
func newShadowedFake(t *testing.T) (*iptBackend, *fakeIPT) {
	t.Helper()
	f := newFakeIPT()
	f.chains["filter/FORWARD"] = [][]string{{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}}
	f.gen = &fakeGen{gen: 100}
	b := newFakeBackend(t, f)
	b.gen, b.counted = f.gen, true
	must(t, "Sync", b.Sync(samplePinholes()))
	if b.shadow == nil {
		t.Fatal("no shadow after Sync")
	}
	return b, f
}

// wantFake checks that the fake holds exactly ps's rules, once each.
func wantFake(t *testing.T, b *iptBackend, f *fakeIPT, ps []Pinhole) {
	t.Helper()
	d, err := b.Verify(ps)
	if err != nil || !d.Clean() {
		t.Fatalf("Verify: %v, %v\n%s", d, err, f.dump())
	}
}

// cost runs f and returns the listings and mutating calls it made.
func cost(fk *fakeIPT, f func()) (lists int, calls []string) {
	fk.lists, fk.calls = 0, nil
	f()
	return fk.lists, fk.calls
}

var extraPinhole = Pinhole{Proto: TCP, ExternalPort: 1000, InternalAddr: mustAddr("198.51.100.250"), InternalPort: 4242,
	Filters: []Filter{{Prefix: mustPrefix("203.0.113.0/28")}}}

// TestIPTablesShadowFast: while the shadow is trusted, Add, Remove and
// Apply each cost one iptables-restore and no listing, whose input deletes
// exactly the old rules and appends the new ones, DNAT first.
func TestIPTablesShadowFast(t *testing.T) {
	b, f := newShadowedFake(t)
	ps := samplePinholes()

	lists, calls := cost(f, func() { must(t, "Add", b.Add(extraPinhole)) })
	if lists != 0 || !slices.Equal(calls, []string{"restore"}) {
		t.Errorf("Add: %d listings, calls %q", lists, calls)
	}
	in := f.restores[len(f.restores)-1]
	if !strings.HasPrefix(in, "*nat\n-A DPF-PREROUTING ") || strings.Count(in, "-A DPF-FORWARD ") != 2 ||
		strings.Contains(in, "-D ") || strings.Count(in, "COMMIT\n") != 2 {
		t.Errorf("Add input:\n%s", in)
	}
	wantFake(t, b, f, append(slices.Clone(ps), extraPinhole))

	// Replacing a filtered pinhole with an unfiltered one: its three
	// forward rules out, one in.
	replaced := ps[2]
	replaced.Filters = nil
	lists, calls = cost(f, func() { must(t, "Add", b.Add(replaced)) })
	if lists != 0 || len(calls) != 1 {
		t.Errorf("replacing Add: %d listings, calls %q", lists, calls)
	}
	in = f.restores[len(f.restores)-1]
	if strings.Count(in, "-D DPF-FORWARD ") != 3 || strings.Count(in, "-D DPF-PREROUTING ") != 1 ||
		strings.Index(in, "-D DPF-PREROUTING") > strings.Index(in, "-D DPF-FORWARD") {
		t.Errorf("replacing Add input:\n%s", in)
	}

	// Adding what is there costs nothing at all.
	lists, calls = cost(f, func() { must(t, "Add", b.Add(replaced)) })
	if lists != 0 || len(calls) != 0 {
		t.Errorf("idempotent Add: %d listings, calls %q", lists, calls)
	}

	lists, calls = cost(f, func() { must(t, "Remove", b.Remove(extraPinhole.Key())) })
	if lists != 0 || len(calls) != 1 {
		t.Errorf("Remove: %d listings, calls %q", lists, calls)
	}
	lists, calls = cost(f, func() { must(t, "Remove absent", b.Remove(extraPinhole.Key())) })
	if lists != 0 || len(calls) != 0 {
		t.Errorf("removing the absent: %d listings, calls %q", lists, calls)
	}

	// Apply: a removal, a key removed and added back otherwise, two
	// additions; one run.
	moved := ps[0]
	moved.InternalPort = 8000
	more := Pinhole{Proto: UDP, ExternalPort: 4500, InternalAddr: mustAddr("198.51.100.7"), InternalPort: 4500}
	lists, calls = cost(f, func() {
		must(t, "Apply", b.Apply([]Pinhole{moved, more, extraPinhole}, []Key{ps[1].Key(), ps[0].Key()}))
	})
	if lists != 0 || len(calls) != 1 {
		t.Errorf("Apply: %d listings, calls %q", lists, calls)
	}
	wantFake(t, b, f, []Pinhole{moved, replaced, more, extraPinhole})
	if b.shadow == nil || b.shadow.gen != f.gen.gen {
		t.Errorf("shadow after Apply: %+v at generation %d", b.shadow, f.gen.gen)
	}
}

// TestIPTablesShadowForeignChange: after someone else's change the shadow
// is not trusted; the change reads the chains, comes out right, and the
// shadow is back for the next one.
func TestIPTablesShadowForeignChange(t *testing.T) {
	b, f := newShadowedFake(t)
	ps := samplePinholes()
	// An admin deletes 8080's DNAT rule (the generation moves).
	f.chains["nat/DPF-PREROUTING"] = slices.DeleteFunc(f.chains["nat/DPF-PREROUTING"],
		func(r []string) bool { return slices.Contains(r, "dpf:tcp:8080") })
	f.gen.gen++
	lists, calls := cost(f, func() { must(t, "Remove", b.Remove(ps[0].Key())) })
	if lists != 2 || len(calls) != 1 {
		t.Errorf("Remove after a foreign change: %d listings, calls %q", lists, calls)
	}
	if in := f.restores[len(f.restores)-1]; strings.Contains(in, "DPF-PREROUTING") {
		t.Errorf("Remove deleted a DNAT rule that was gone:\n%s", in)
	}
	wantFake(t, b, f, ps[1:])
	lists, _ = cost(f, func() { must(t, "Add", b.Add(ps[0])) })
	if lists != 0 {
		t.Errorf("Add after the shadow was re-established: %d listings", lists)
	}
	wantFake(t, b, f, ps)

	// A change the generation does not show (a legacy fingerprint
	// cannot see every one): the restore fails on the rule that is gone,
	// and the change is made again from a listing.
	f.chains["filter/DPF-FORWARD"] = slices.DeleteFunc(f.chains["filter/DPF-FORWARD"],
		func(r []string) bool { return slices.Contains(r, "dpf:udp:5353") })
	// The failed run committed its nat section before failing in the
	// filter one, so the listing finds nothing left to do.
	lists, calls = cost(f, func() { must(t, "Remove", b.Remove(ps[1].Key())) })
	if lists != 2 || len(calls) != 1 {
		t.Errorf("Remove after an unseen change: %d listings, calls %q", lists, calls)
	}
	wantFake(t, b, f, []Pinhole{ps[0], ps[2]})

	// Someone commits while our restore runs: the generation moves by
	// more than our commits, so the shadow is dropped.
	f.onRestore = func() { f.gen.gen++ }
	must(t, "Add", b.Add(ps[1]))
	f.onRestore = nil
	if b.shadow != nil {
		t.Error("shadow kept across a foreign commit made during ours")
	}
	lists, _ = cost(f, func() { must(t, "Add", b.Add(extraPinhole)) })
	if lists != 2 {
		t.Errorf("Add after a foreign commit during ours: %d listings, want 2", lists)
	}
	wantFake(t, b, f, append(slices.Clone(ps), extraPinhole))

	// Legacy: the fingerprint is no counter, so only "same or not".
	b.counted = false
	f.chains["filter/DPF-FORWARD"] = append(f.chains["filter/DPF-FORWARD"], []string{"-j", "ACCEPT"})
	f.gen.gen += 7
	lists, _ = cost(f, func() { must(t, "Remove", b.Remove(extraPinhole.Key())) })
	if lists != 2 {
		t.Errorf("legacy Remove after a foreign change: %d listings, want 2", lists)
	}
	if got := f.chains["filter/DPF-FORWARD"]; !slices.ContainsFunc(got, func(r []string) bool { return slices.Equal(r, []string{"-j", "ACCEPT"}) }) {
		t.Errorf("foreign rule in DPF-FORWARD lost: %q", got)
	}
}

// TestIPTablesShadowRestoreFails: a restore that fails after committing
// its nat section leaves the shadow dropped; the call's own retry from a
// listing fails too (the failure persists), and once iptables-restore
// works again the next call finds the half-made state and completes it.
func TestIPTablesShadowRestoreFails(t *testing.T) {
	b, f := newShadowedFake(t)
	ps := samplePinholes()
	f.failRestore = iptTableFilter
	err := b.Apply([]Pinhole{extraPinhole}, []Key{ps[0].Key()})
	if err == nil {
		t.Fatal("Apply with a failing restore succeeded")
	}
	if b.shadow != nil {
		t.Error("shadow kept after a failed restore")
	}
	// nat committed, filter not: 8080's DNAT is gone, its accept is not.
	if d := f.dump(); strings.Contains(d, "nat: -A DPF-PREROUTING -p tcp -m tcp --dport 8080") ||
		!strings.Contains(d, "dpf:tcp:8080 -j ACCEPT") {
		t.Fatalf("after the half-made Apply:\n%s", d)
	}
	f.failRestore = ""
	lists, calls := cost(f, func() { must(t, "Apply again", b.Apply([]Pinhole{extraPinhole}, []Key{ps[0].Key()})) })
	if lists != 2 || len(calls) != 1 {
		t.Errorf("retried Apply: %d listings, calls %q", lists, calls)
	}
	want := []Pinhole{ps[1], ps[2], extraPinhole}
	wantFake(t, b, f, want)
	if b.shadow == nil {
		t.Error("no shadow after the recovering Apply")
	}
	got, err := b.Installed()
	must(t, "Installed", err)
	m, _ := validateAll(want)
	if !reflect.DeepEqual(got, sortedPinholes(m)) {
		t.Errorf("Installed = %v", got)
	}
}

// TestIPTablesNoRestore: without iptables-restore every change is made
// rule by rule from a listing, and comes out the same.
func TestIPTablesNoRestore(t *testing.T) {
	b, f := newShadowedFake(t)
	ps := samplePinholes()
	f.noRestore = true
	moved := ps[2]
	moved.InternalPort = 2200
	lists, calls := cost(f, func() { must(t, "Apply", b.Apply([]Pinhole{moved, extraPinhole}, []Key{ps[1].Key()})) })
	if lists != 2 || slices.Contains(calls, "restore") {
		t.Errorf("Apply without iptables-restore: %d listings, calls %q", lists, calls)
	}
	wantFake(t, b, f, []Pinhole{ps[0], moved, extraPinhole})
	lists, calls = cost(f, func() { must(t, "Remove", b.Remove(extraPinhole.Key())) })
	if lists != 2 || slices.Contains(calls, "restore") || len(calls) != 3 {
		t.Errorf("Remove without iptables-restore: %d listings, calls %q", lists, calls)
	}
	wantFake(t, b, f, []Pinhole{ps[0], moved})
}

// TestIPTablesShadowVerify: our changes from the shadow are never taken
// for foreign ones (the watcher's window covers them, and Verify finds
// the kernel clean), while a foreign change is still found; a clean
// Verify re-establishes the shadow.
func TestIPTablesShadowVerify(t *testing.T) {
	b, f := newShadowedFake(t)
	ps := samplePinholes()
	wantFake(t, b, f, ps)
	if !b.Unchanged(len(ps)) {
		t.Fatal("not Unchanged after a clean Verify")
	}
	must(t, "Add", b.Add(extraPinhole))
	if !b.own.active(time.Now()) {
		t.Error("our own change is not in the watcher's window")
	}
	all := append(slices.Clone(ps), extraPinhole)
	// Made from the shadow, with the generation moved by our commits
	// alone: the kernel is still known clean, with one pinhole more.
	if !b.Unchanged(len(all)) || b.Unchanged(len(ps)) {
		t.Error("our own change from the shadow lost the clean mark")
	}
	// Someone commits while ours runs: not known any more.
	f.onRestore = func() { f.gen.gen++ }
	must(t, "Remove", b.Remove(extraPinhole.Key()))
	f.onRestore = nil
	if b.Unchanged(len(ps)) {
		t.Error("Unchanged after a foreign commit during our change")
	}
	wantFake(t, b, f, ps)
	// Legacy's fingerprint counts nothing: our change forgets the mark.
	b.counted = false
	must(t, "Add", b.Add(extraPinhole))
	if b.Unchanged(len(all)) {
		t.Error("Unchanged after our change on iptables-legacy, before any Verify")
	}
	b.counted = true
	wantFake(t, b, f, all)
	if !b.Unchanged(len(all)) || b.shadow == nil {
		t.Fatal("Verify did not re-establish the mark and shadow")
	}
	f.chains["nat/DPF-PREROUTING"] = f.chains["nat/DPF-PREROUTING"][1:]
	f.gen.gen++
	if b.Unchanged(len(all)) {
		t.Error("Unchanged after a foreign change")
	}
	d, err := b.Verify(all)
	if err != nil || len(d.Missing) != 1 {
		t.Errorf("Verify after a foreign change: %v, %v", d, err)
	}
	if b.shadow != nil {
		t.Error("shadow kept after Verify found drift")
	}
	must(t, "Sync", b.Sync(all))
	wantFake(t, b, f, all)
	if b.gen.(*fakeGen).fail = errors.New("no netlink"); b.Add(ps[0]) != nil {
		t.Error("Add failed for want of a generation id")
	}
}

// TestIPTablesShadowKernel: on the real iptables (iptables-nft, and
// iptables-legacy first in $PATH) the shadow stays trusted across dpfd's
// own changes, is distrusted after someone else's, and the changes made
// either way leave exactly the wanted rules.
func TestIPTablesShadowKernel(t *testing.T) {
	for _, kind := range []string{"iptables-nft", "iptables-legacy"} {
		t.Run(kind, func(t *testing.T) {
			ns := newNetNS(t)
			cmd := "iptables"
			if kind == "iptables-legacy" {
				useLegacy(t)
				cmd = "iptables-legacy"
			}
			b := newKernelBackend(t, KindIPTables, ns, "wan0").(*iptBackend)
			if g, ok := b.gen.(*legacyGen); ok {
				// The fingerprint turns over every legacyDeepCheck;
				// here time stands still, so the test can't straddle it.
				start := time.Now()
				g.now = func() time.Time { return start }
			}
			trusted := func(what string, want bool) {
				t.Helper()
				if _, ok := b.shadowGen(); ok != want {
					t.Fatalf("%s: shadow trusted %v, want %v", what, ok, want)
				}
			}
			ps := samplePinholes()
			must(t, "Sync", b.Sync(ps))
			trusted("after Sync", true)
			must(t, "Add", b.Add(extraPinhole))
			trusted("after Add", true)
			moved := ps[0]
			moved.InternalPort = 8000
			must(t, "Apply", b.Apply([]Pinhole{moved}, []Key{ps[1].Key()}))
			trusted("after Apply", true)
			want := []Pinhole{moved, ps[2], extraPinhole}
			wantInstalled(t, b, want)
			if d, err := b.Verify(want); err != nil || !d.Clean() {
				t.Fatalf("Verify: %v, %v", d, err)
			}
			// Our own change keeps the kernel known clean where the
			// generation counts commits (iptables-nft), not on legacy.
			must(t, "Add", b.Add(ps[1]))
			if got := b.Unchanged(len(want) + 1); got != (kind == "iptables-nft") {
				t.Errorf("Unchanged after our own Add = %v", got)
			}
			trusted("after Add", true)

			nsRun(t, ns, cmd, "-t", "nat", "-F", iptChainNAT)
			trusted("after a foreign flush", false)
			must(t, "Remove", b.Remove(extraPinhole.Key()))
			trusted("after Remove from a listing", false) // the other keys' DNAT rules are gone
			must(t, "Sync", b.Sync(want[:2]))
			trusted("after the repairing Sync", true)
			must(t, "Remove", b.Remove(ps[2].Key()))
			wantInstalled(t, b, want[:1])
			trusted("after Remove", true)
		})
	}
}

// TestIPTablesRestoreQuoting: a rule of ours that someone gave a comment
// with blanks and quotes is deleted through iptables-restore all the same.
func TestIPTablesRestoreQuoting(t *testing.T) {
	for in, want := range map[string]string{"dpf:tcp:9": "dpf:tcp:9", "": `""`, `a "b" c\d`: `"a \"b\" c\\d"`} {
		if got := restoreQuote(in); got != want {
			t.Errorf("restoreQuote(%q) = %s, want %s", in, got, want)
		}
	}
	b, f := newShadowedFake(t)
	doctored := []string{"-p", "tcp", "-m", "comment", "--comment", "dpf:tcp:9", "-m", "comment", "--comment", `a "b" c\d`, "-j", "ACCEPT"}
	f.chains["filter/DPF-FORWARD"] = append(f.chains["filter/DPF-FORWARD"], doctored)
	f.gen.gen++
	must(t, "Remove", b.Remove(Key{TCP, 9}))
	wantFake(t, b, f, samplePinholes())
}
