package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
)

// verifyingFirewall is leasetest's firewall plus firewall.Verifier: Verify
// compares the fake's pinholes with what must be installed, and Unchanged
// holds while nothing touched the fake since the last clean Verify.
type verifyingFirewall struct {
	*leasetest.Firewall
	dirty     bool // changed "from outside" (wreck) or not verified yet
	verifies  int
	syncs     int
	verifyErr error
}

var _ firewall.Verifier = (*verifyingFirewall)(nil)

func (f *verifyingFirewall) Unchanged(n int) bool { return !f.dirty && f.Len() == n }

func (f *verifyingFirewall) Verify(ps []firewall.Pinhole) (firewall.Drift, error) {
	f.verifies++
	if f.verifyErr != nil {
		return firewall.Drift{}, f.verifyErr
	}
	var d firewall.Drift
	want := map[firewall.Key]bool{}
	for _, p := range ps {
		want[p.Key()] = true
		if got, ok := f.Get(p.Key()); !ok || got.InternalAddr != p.InternalAddr || got.InternalPort != p.InternalPort {
			d.Missing = append(d.Missing, p.Key())
		}
	}
	if f.Len() > len(ps)-len(d.Missing) {
		d.Stale = append(d.Stale, firewall.Key{}) // the count suffices here
	}
	f.dirty = !d.Clean()
	return d, nil
}

func (f *verifyingFirewall) Sync(ps []firewall.Pinhole) error {
	f.syncs++
	return f.Firewall.Sync(ps)
}

// wreck empties the firewall behind the Manager's back, as `nft flush
// ruleset` would.
func (f *verifyingFirewall) wreck() {
	f.Firewall.Sync(nil)
	f.dirty = true
}

func TestVerifyFirewallRepairs(t *testing.T) {
	fw := &verifyingFirewall{Firewall: leasetest.NewFirewall(), dirty: true}
	r := newRig(t, func(c *lease.Config) { c.Firewall = fw })
	for _, port := range []uint16{8080, 8081, 8082} {
		if _, err := r.m.Map(natpmp(hostA, firewall.TCP, port, port, 10*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	// First call: not known clean yet, so it reads, finds all in place.
	v, err := r.m.VerifyFirewall()
	if err != nil || !v.Drift.Clean() || !v.Read || fw.verifies != 1 || fw.syncs != 0 {
		t.Fatalf("first VerifyFirewall: %+v, %v (verifies %d, syncs %d)", v, err, fw.verifies, fw.syncs)
	}
	// Nothing changed: the cheap check suffices.
	for range 5 {
		if v, err := r.m.VerifyFirewall(); err != nil || !v.Drift.Clean() || v.Read {
			t.Fatalf("VerifyFirewall: %+v, %v", v, err)
		}
	}
	if fw.verifies != 1 {
		t.Errorf("%d Verify calls while unchanged, want 1", fw.verifies)
	}

	fw.wreck()
	v, err = r.m.VerifyFirewall()
	if err != nil || len(v.Drift.Missing) != 3 || fw.syncs != 1 {
		t.Fatalf("after wreck: %+v, %v (syncs %d)", v, err, fw.syncs)
	}
	if fw.Len() != 3 {
		t.Fatalf("%d pinholes after repair, want 3", fw.Len())
	}
	// Repaired: the next check reads once more, finds it clean, and
	// does not sync again.
	if v, err := r.m.VerifyFirewall(); err != nil || !v.Drift.Clean() || fw.syncs != 1 {
		t.Fatalf("after repair: %+v, %v (syncs %d)", v, err, fw.syncs)
	}
}

func TestVerifyFirewallErrors(t *testing.T) {
	// A firewall that cannot verify.
	r := newRig(t, nil)
	if _, err := r.m.VerifyFirewall(); !errors.Is(err, lease.ErrCannotVerify) {
		t.Errorf("plain firewall: %v, want ErrCannotVerify", err)
	}

	// Verify fails: reported, nothing synced.
	fw := &verifyingFirewall{Firewall: leasetest.NewFirewall(), dirty: true, verifyErr: leasetest.ErrInjected}
	r = newRig(t, func(c *lease.Config) { c.Firewall = fw })
	if _, err := r.m.VerifyFirewall(); !errors.Is(err, leasetest.ErrInjected) || fw.syncs != 0 {
		t.Errorf("failing Verify: %v (syncs %d)", err, fw.syncs)
	}

	// Sync fails: reported with the drift, and tried again next time.
	fw.verifyErr = nil
	if _, err := r.m.Map(natpmp(hostA, firewall.UDP, 5000, 5000, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	fw.wreck()
	fw.Fail = leasetest.ErrInjected
	v, err := r.m.VerifyFirewall()
	if !errors.Is(err, leasetest.ErrInjected) || len(v.Drift.Missing) != 1 {
		t.Fatalf("failing Sync: %+v, %v", v, err)
	}
	fw.Fail = nil
	if v, err := r.m.VerifyFirewall(); err != nil || len(v.Drift.Missing) != 1 || fw.Len() != 1 {
		t.Fatalf("retry: %+v, %v (%d pinholes)", v, err, fw.Len())
	}
}
