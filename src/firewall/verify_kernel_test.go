//go:build linux

package firewall

// Real-kernel tests of self-healing: each kind of outside damage is
// reported by the Watcher, found by Verify, and repaired by Sync without
// duplicating anything.

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// eventWait bounds how long a test waits for a change notification; the
// kernel sends them at commit, so this is only slack for a loaded machine.
const eventWait = 5 * time.Second

// quiet waits until no notification came for a while (bounded), so that
// notifications of earlier changes do not count for the next one.
func quiet(events <-chan struct{}) {
	for range 20 {
		select {
		case <-events:
		case <-time.After(300 * time.Millisecond):
			return
		}
	}
}

// damage is one way of breaking a backend's state from outside.
type damage struct {
	name string
	do   func(t *testing.T, ns string)
}

func nftReload(t *testing.T, ns string) {
	// A firewall reload as fw4 or nftables.service does it: one file,
	// one transaction, starting with "flush ruleset".
	f := filepath.Join(t.TempDir(), "reload.nft")
	rules := "flush ruleset\ntable inet fw {\n\tchain input {\n\t\ttype filter hook input priority 0; policy accept;\n\t\ttcp dport 22 accept\n\t}\n}\n"
	if err := os.WriteFile(f, []byte(rules), 0o644); err != nil {
		t.Fatal(err)
	}
	nsRun(t, ns, "nft", "-f", f)
}

func cmdDamage(name string, args ...string) damage {
	return damage{name, func(t *testing.T, ns string) { nsRun(t, ns, args[0], args[1:]...) }}
}

func testHealKernel(t *testing.T, kind string, dump func(t *testing.T, ns string) string, damages []damage) {
	ns := newNetNS(t)
	if kind == KindIPTables {
		nsRun(t, ns, "iptables", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT")
	}
	b := newKernelBackend(t, kind, ns, "wan0")
	v, ok := b.(Verifier)
	if !ok {
		t.Fatalf("%s backend is not a Verifier", kind)
	}
	ps := samplePinholes()
	must(t, "Init", b.Init())
	must(t, "Sync", b.Sync(ps))
	if d, err := v.Verify(ps); err != nil || !d.Clean() {
		t.Fatalf("Verify after Sync: %v, %v", d, err)
	}
	if !v.Unchanged(len(ps)) {
		t.Fatal("not Unchanged after a clean Verify")
	}
	golden := dump(t, ns)

	if kind == KindNFTables {
		// Our own changes keep the mark: no reading needed after them.
		extra := Pinhole{Proto: UDP, ExternalPort: 9999, InternalAddr: mustAddr("198.51.100.4"), InternalPort: 9}
		must(t, "Add", b.Add(extra))
		if !v.Unchanged(len(ps) + 1) {
			t.Error("Add of our own dropped Unchanged")
		}
		must(t, "Remove", b.Remove(extra.Key()))
		if !v.Unchanged(len(ps)) {
			t.Error("Remove of our own dropped Unchanged")
		}
	}

	w, ok := b.(Watchable)
	if !ok {
		t.Fatalf("%s backend is not Watchable", kind)
	}
	watcher, err := w.NewWatcher()
	if err != nil {
		t.Fatalf("NewWatcher: %v", err)
	}
	events := make(chan struct{}, 1)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() {
		done <- watcher.Run(ctx, func() {
			select {
			case events <- struct{}{}:
			default:
			}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watcher.Run: %v", err)
			}
		case <-time.After(eventWait):
			t.Error("Watcher.Run did not return after cancel")
		}
	})

	// Someone else's table: the generation moves, so Unchanged cannot
	// tell, but Verify finds everything in place and no notification
	// comes for it.
	quiet(events)
	nsRun(t, ns, "nft", "add table ip other; add chain ip other c { type filter hook input priority 0; }")
	if v.Unchanged(len(ps)) {
		t.Error("Unchanged after someone else's commit")
	}
	if d, err := v.Verify(ps); err != nil || !d.Clean() {
		t.Errorf("Verify after an unrelated change: %v, %v", d, err)
	}
	select {
	case <-events:
		t.Error("notified of a change to an unrelated table")
	case <-time.After(500 * time.Millisecond):
	}

	for _, dm := range damages {
		t.Run(strings.ReplaceAll(dm.name, " ", "_"), func(t *testing.T) {
			if d, err := v.Verify(ps); err != nil || !d.Clean() {
				out, _ := command("ip", "netns", "exec", ns, "nft", "list", "ruleset")
				t.Fatalf("Verify before: %v, %v\n%s", d, err, out)
			}
			quiet(events)
			start := time.Now()
			dm.do(t, ns)
			select {
			case <-events:
				t.Logf("notified %v after the damage", time.Since(start).Round(time.Microsecond))
			case <-time.After(eventWait):
				t.Fatalf("no notification within %v", eventWait)
			}
			if v.Unchanged(len(ps)) {
				t.Fatal("Unchanged after the damage")
			}
			d, err := v.Verify(ps)
			if err != nil {
				t.Fatal(err)
			}
			if d.Clean() {
				t.Fatalf("Verify found nothing wrong:\n%s", dump(t, ns))
			}
			t.Logf("drift: %v", d)
			for range 2 { // the second Sync must change nothing
				must(t, "Sync", b.Sync(ps))
				if got := dump(t, ns); got != golden {
					t.Fatalf("after Sync:\n%s\nwant:\n%s", got, golden)
				}
			}
			if d, err := v.Verify(ps); err != nil || !d.Clean() {
				t.Fatalf("Verify after Sync: %v, %v", d, err)
			}
			wantInstalled(t, b, ps)
		})
	}
}

func TestNFTablesHealKernel(t *testing.T) {
	testHealKernel(t, KindNFTables, nftDump, []damage{
		cmdDamage("nft flush ruleset", "nft", "flush", "ruleset"),
		cmdDamage("nft delete table", "nft", "delete", "table", "ip", "dpf"),
		{"nft -f reload", nftReload},
		cmdDamage("nft flush chain", "nft", "flush", "chain", "ip", "dpf", "dnat_pre"),
		cmdDamage("nft delete element", "nft", "delete", "element", "ip", "dpf", "dnat_tcp", "{ 8080 }"),
		cmdDamage("nft add element", "nft", "add", "element", "ip", "dpf", "fwd_pinholes", "{ 198.51.100.9 . tcp . 22 }"),
		cmdDamage("nft add rule", "nft", "add", "rule", "ip", "dpf", "filter_fwd", "accept"),
	})
}

// iptOurs is iptDump restricted to dpfd's chains and jumps: the system's
// own rules are whatever each damage left of them.
func iptOurs(t *testing.T, ns string) string {
	var out []string
	for _, l := range strings.Split(iptDump(t, ns), "\n") {
		if strings.Contains(l, "DPF-") || strings.HasPrefix(l, "*") {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}

func TestIPTablesHealKernel(t *testing.T) {
	testHealKernel(t, KindIPTables, iptOurs, []damage{
		cmdDamage("iptables -t nat -F", "iptables", "-t", "nat", "-F"),
		cmdDamage("iptables -F", "iptables", "-F"),
		cmdDamage("iptables -t nat -F -X", "sh", "-c", "iptables -t nat -F && iptables -t nat -X"),
		cmdDamage("nft flush ruleset", "nft", "flush", "ruleset"),
		{"nft -f reload", nftReload},
		cmdDamage("duplicate jump", "iptables", "-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-j", "DPF-PREROUTING"),
		cmdDamage("rule deleted", "iptables", "-t", "nat", "-D", "DPF-PREROUTING", "1"),
	})
}

// TestHealTrafficKernel: after a flush, traffic through a pinhole stops,
// and Sync brings it back.
func TestHealTrafficKernel(t *testing.T) {
	for _, kind := range []string{KindNFTables, KindIPTables} {
		t.Run(kind, func(t *testing.T) {
			tp := newTopology(t)
			startServer(t, tp.lan, "198.51.100.2:8000")
			b := newKernelBackend(t, kind, tp.router, "wan0")
			ps := []Pinhole{{Proto: TCP, ExternalPort: 8080, InternalAddr: mustAddr("198.51.100.2"), InternalPort: 8000}}
			must(t, "Sync", b.Sync(ps))
			waitDial(t, tp, "203.0.113.2", "203.0.113.1:8080", true)
			for _, flush := range [][]string{{"nft", "flush", "ruleset"}, {"iptables", "-t", "nat", "-F"}} {
				if kind == KindNFTables && flush[0] == "iptables" {
					continue
				}
				nsRun(t, tp.router, flush[0], flush[1:]...)
				waitDial(t, tp, "203.0.113.2", "203.0.113.1:8080", false)
				d, err := b.(Verifier).Verify(ps)
				if err != nil || d.Clean() {
					t.Fatalf("Verify after %s: %v, %v", flush, d, err)
				}
				must(t, "Sync", b.Sync(ps))
				waitDial(t, tp, "203.0.113.2", "203.0.113.1:8080", true)
			}
		})
	}
}

// TestIPTablesLegacyHealKernel: with iptables-legacy (no notifications, no
// generation id) the table fingerprint still tells a flush from nothing.
func TestIPTablesLegacyHealKernel(t *testing.T) {
	ns := newNetNS(t)
	useLegacy(t)
	b := newKernelBackend(t, KindIPTables, ns, "wan0")
	if ib := b.(*iptBackend); ib.events {
		t.Fatal("iptables-legacy taken for iptables-nft")
	}
	if _, err := b.(Watchable).NewWatcher(); !errors.Is(err, ErrUnsupported) {
		t.Errorf("NewWatcher on iptables-legacy: %v, want ErrUnsupported", err)
	}
	v := b.(Verifier)
	ps := samplePinholes()
	must(t, "Sync", b.Sync(ps))
	if d, err := v.Verify(ps); err != nil || !d.Clean() {
		t.Fatalf("Verify: %v, %v", d, err)
	}
	if !v.Unchanged(len(ps)) {
		t.Fatal("not Unchanged after a clean Verify")
	}
	// Listing changes nothing.
	nsRun(t, ns, "iptables-legacy-save")
	if !v.Unchanged(len(ps)) {
		t.Fatal("not Unchanged after iptables-save")
	}
	golden := iptLegacyOurs(t, ns)
	for _, flush := range [][]string{{"-t", "nat", "-F"}, {"-F"}} {
		nsRun(t, ns, "iptables-legacy", flush...)
		if v.Unchanged(len(ps)) {
			t.Fatalf("Unchanged after iptables %s", flush)
		}
		d, err := v.Verify(ps)
		if err != nil || d.Clean() {
			t.Fatalf("Verify after iptables %s: %v, %v", flush, d, err)
		}
		must(t, "Sync", b.Sync(ps))
		if got := iptLegacyOurs(t, ns); got != golden {
			t.Fatalf("after Sync:\n%s\nwant:\n%s", got, golden)
		}
	}
	must(t, "Cleanup", b.Cleanup())
}

// iptLegacyOurs is dpfd's part of iptables-legacy-save, comments and
// counters aside.
func iptLegacyOurs(t *testing.T, ns string) string {
	var out []string
	for _, l := range strings.Split(nsRun(t, ns, "iptables-legacy-save"), "\n") {
		if strings.Contains(l, "DPF-") && !strings.HasPrefix(l, ":") {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// useLegacy puts iptables-legacy first in $PATH, for the rest of the test,
// under the names the iptables backend runs.
func useLegacy(t testing.TB) {
	bin := t.TempDir()
	for name, target := range map[string]string{"iptables": "iptables-legacy", "iptables-restore": "iptables-legacy-restore"} {
		path, err := exec.LookPath(target)
		if err != nil {
			t.Fatalf("%s is not installed: %v", target, err)
		}
		if err := os.Symlink(path, filepath.Join(bin, name)); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
}
