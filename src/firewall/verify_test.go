//go:build linux

package firewall

import (
	"errors"
	"slices"
	"strings"
	"testing"
)

// fakeGen is a genSource whose generation the test moves.
type fakeGen struct {
	gen  uint32
	fail error
}

func (g *fakeGen) read() (uint32, error) { return g.gen, g.fail }
func (g *fakeGen) close()                {}

func TestDriftString(t *testing.T) {
	if s := (Drift{}).String(); s != "no drift" || !(Drift{}).Clean() {
		t.Errorf("zero Drift: %q", s)
	}
	var d Drift
	d.Structure = []string{"table ip dpf missing"}
	for i := range 10 {
		d.Missing = append(d.Missing, Key{TCP, uint16(8000 + i)})
	}
	d.Stale = []Key{{UDP, 53}}
	want := "table ip dpf missing; 10 pinholes missing (tcp/8000, tcp/8001, tcp/8002, tcp/8003, tcp/8004, tcp/8005, tcp/8006, tcp/8007, and 2 more); 1 stale pinholes (udp/53)"
	if got := d.String(); got != want || d.Clean() {
		t.Errorf("String() =\n%s\nwant\n%s", got, want)
	}
}

// TestIPTablesVerifyFake: Verify finds each kind of damage an admin or a
// firewall reload does, Sync repairs it without duplicating anything, and
// Unchanged follows the generation id.
func TestIPTablesVerifyFake(t *testing.T) {
	ps := samplePinholes()
	ruleOf := func(f *fakeIPT, chain string, tag string) []string {
		for _, r := range f.chains[chain] {
			if slices.Contains(r, tag) {
				return slices.Clone(r)
			}
		}
		t.Fatalf("no rule tagged %s in %s", tag, chain)
		return nil
	}
	cases := []struct {
		name  string
		wreck func(f *fakeIPT)
		check func(t *testing.T, d Drift)
	}{
		{"iptables -t nat -F", func(f *fakeIPT) {
			f.chains["nat/PREROUTING"] = nil
			f.chains["nat/DPF-PREROUTING"] = nil
		}, func(t *testing.T, d Drift) {
			if len(d.Missing) != 3 || !strings.Contains(strings.Join(d.Structure, ";"), "jump from nat PREROUTING to DPF-PREROUTING missing") {
				t.Errorf("drift: %v", d)
			}
		}},
		{"iptables -F", func(f *fakeIPT) {
			f.chains["filter/FORWARD"] = nil
			f.chains["filter/DPF-FORWARD"] = nil
		}, func(t *testing.T, d Drift) {
			if len(d.Missing) != 3 || !strings.Contains(strings.Join(d.Structure, ";"), "jump from filter FORWARD to DPF-FORWARD missing") {
				t.Errorf("drift: %v", d)
			}
		}},
		{"chains deleted", func(f *fakeIPT) {
			f.chains["nat/PREROUTING"] = nil
			delete(f.chains, "nat/DPF-PREROUTING")
			f.chains["filter/FORWARD"] = f.chains["filter/FORWARD"][1:]
			delete(f.chains, "filter/DPF-FORWARD")
		}, func(t *testing.T, d Drift) {
			if len(d.Missing) != 3 || len(d.Structure) != 4 {
				t.Errorf("drift: %v", d)
			}
		}},
		{"one rule deleted", func(f *fakeIPT) {
			f.chains["nat/DPF-PREROUTING"] = f.chains["nat/DPF-PREROUTING"][1:]
		}, func(t *testing.T, d Drift) {
			if len(d.Missing) != 1 || len(d.Structure) != 0 {
				t.Errorf("drift: %v", d)
			}
		}},
		{"jump and rule duplicated", func(f *fakeIPT) {
			f.chains["nat/PREROUTING"] = append(f.chains["nat/PREROUTING"], []string{"-i", "wan0", "-j", iptChainNAT})
			f.chains["filter/DPF-FORWARD"] = append(f.chains["filter/DPF-FORWARD"], ruleOf(f, "filter/DPF-FORWARD", "dpf:tcp:8080"))
		}, func(t *testing.T, d Drift) {
			if !slices.Equal(d.Duplicated, []Key{{TCP, 8080}}) || len(d.Missing) != 0 ||
				!strings.Contains(strings.Join(d.Structure, ";"), "duplicated (2)") {
				t.Errorf("drift: %v", d)
			}
		}},
		{"jump not first", func(f *fakeIPT) {
			f.chains["filter/FORWARD"] = slices.Insert(f.chains["filter/FORWARD"], 0, []string{"-j", "DROP"})
		}, func(t *testing.T, d Drift) {
			if !strings.Contains(strings.Join(d.Structure, ";"), "not first") {
				t.Errorf("drift: %v", d)
			}
		}},
		{"stale and foreign rules", func(f *fakeIPT) {
			f.chains["nat/DPF-PREROUTING"] = append(f.chains["nat/DPF-PREROUTING"],
				[]string{"-p", "tcp", "-m", "tcp", "--dport", "9999", "-m", "comment", "--comment", "dpf:tcp:9999", "-j", "DNAT", "--to-destination", "198.51.100.9:99"},
				[]string{"-p", "tcp", "-j", "ACCEPT"})
		}, func(t *testing.T, d Drift) {
			if !slices.Equal(d.Stale, []Key{{TCP, 9999}}) || len(d.Structure) != 1 {
				t.Errorf("drift: %v", d)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeIPT()
			f.chains["filter/FORWARD"] = [][]string{{"-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"}}
			b := newFakeBackend(t, f)
			g := &fakeGen{gen: 10}
			b.gen = g
			if err := b.Sync(ps); err != nil {
				t.Fatal(err)
			}
			// Our own change leaves nothing known until verified.
			if b.Unchanged(len(ps)) {
				t.Fatal("Unchanged right after our own Sync, before any Verify")
			}
			d, err := b.Verify(ps)
			if err != nil || !d.Clean() {
				t.Fatalf("Verify after Sync: %v, %v", d, err)
			}
			if !b.Unchanged(len(ps)) {
				t.Fatal("not Unchanged after a clean Verify")
			}
			if b.Unchanged(len(ps) - 1) {
				t.Fatal("Unchanged with another pinhole count")
			}

			tc.wreck(f)
			g.gen++
			if b.Unchanged(len(ps)) {
				t.Fatal("Unchanged after the generation moved")
			}
			d, err = b.Verify(ps)
			if err != nil {
				t.Fatal(err)
			}
			if d.Clean() {
				t.Fatalf("Verify found nothing after %s:\n%s", tc.name, f.dump())
			}
			tc.check(t, d)
			t.Logf("drift: %v", d)
			if b.Unchanged(len(ps)) {
				t.Fatal("Unchanged after a Verify that found drift")
			}

			if err := b.Sync(ps); err != nil {
				t.Fatal(err)
			}
			if d, err := b.Verify(ps); err != nil || !d.Clean() {
				t.Fatalf("Verify after repair: %v, %v\n%s", d, err, f.dump())
			}
			// Exactly our rules of a fresh install (the system's own
			// FORWARD rules are whatever the damage left of them).
			if got, want := ourLines(f.dump()), ourLines(fakeGolden); got != want {
				t.Fatalf("after repair:\n%s\nwant:\n%s", got, want)
			}
			if fw := f.chains["filter/FORWARD"]; !slices.Equal(fw[0], []string{"-j", iptChainForward}) {
				t.Errorf("FORWARD after repair: %q", fw)
			}
		})
	}
}

// TestIPTablesLegacyUnchanged: without a generation id (iptables-legacy)
// nothing is ever known unchanged, and there are no notifications.
func TestIPTablesLegacyUnchanged(t *testing.T) {
	f := newFakeIPT()
	b := newFakeBackend(t, f)
	if err := b.Sync(samplePinholes()); err != nil {
		t.Fatal(err)
	}
	if d, err := b.Verify(samplePinholes()); err != nil || !d.Clean() {
		t.Fatalf("Verify: %v %v", d, err)
	}
	if b.Unchanged(3) {
		t.Error("Unchanged without a generation id")
	}
	if _, err := b.NewWatcher(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NewWatcher on legacy: %v, want ErrUnsupported", err)
	}
	// A generation that cannot be read is "not known" too.
	b.gen = &fakeGen{fail: errors.New("no netlink")}
	if d, err := b.Verify(samplePinholes()); err != nil || !d.Clean() || b.Unchanged(3) {
		t.Errorf("Verify %v %v, Unchanged %v", d, err, b.Unchanged(3))
	}
}

// ourLines keeps the lines of a fake dump that are dpfd's rules, sorted.
func ourLines(dump string) string {
	var out []string
	for _, l := range strings.Split(dump, "\n") {
		if strings.Contains(l, "DPF-") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}
