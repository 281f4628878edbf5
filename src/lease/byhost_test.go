package lease_test

import (
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

// TestClientLeasesFollowsTheTable checks the per-host index behind
// ClientLeases, DeleteAll and the per-host quota through creates, deletes
// and a delete-all.
func TestClientLeasesFollowsTheTable(t *testing.T) {
	r := newRig(t, nil) // MaxPerHost 4
	for _, q := range []lease.Request{
		natpmp(hostA, firewall.UDP, 5000, 5000, time.Minute),
		natpmp(hostA, firewall.TCP, 6000, 6000, time.Minute),
		natpmp(hostB, firewall.TCP, 7000, 7000, time.Minute),
		natpmp(hostA, firewall.TCP, 5000, 5000, time.Minute),
	} {
		if _, err := r.m.Map(q); err != nil {
			t.Fatal(err)
		}
	}
	ports := func(ls []lease.Lease) (out []uint16) {
		for _, l := range ls {
			out = append(out, l.ExternalPort)
		}
		return out
	}
	if got := ports(r.m.ClientLeases(hostA)); len(got) != 3 || got[0] != 5000 || got[1] != 6000 || got[2] != 5000 {
		t.Fatalf("hostA leases by proto and port: %v", got)
	}
	if got := ports(r.m.ClientLeases(hostB)); len(got) != 1 || got[0] != 7000 {
		t.Fatalf("hostB leases: %v", got)
	}
	// One more for hostA fills its quota of 4; the fifth is refused.
	if _, err := r.m.Map(natpmp(hostA, firewall.UDP, 5001, 5001, time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.UDP, 5002, 5002, time.Minute)); err == nil {
		t.Fatal("quota not enforced")
	}
	if n, err := r.m.DeleteAll(hostA, firewall.TCP, lease.OriginNATPMP); err != nil || n != 2 {
		t.Fatalf("DeleteAll: %d %v", n, err)
	}
	if got := ports(r.m.ClientLeases(hostA)); len(got) != 2 || got[0] != 5000 || got[1] != 5001 {
		t.Fatalf("hostA after delete-all: %v", got)
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.UDP, 5002, 5002, time.Minute)); err != nil {
		t.Fatalf("quota not released: %v", err)
	}
	for _, l := range r.m.ClientLeases(hostA) {
		if _, err := r.m.Delete(l.Key(), "test"); err != nil {
			t.Fatal(err)
		}
	}
	if got := r.m.ClientLeases(hostA); len(got) != 0 {
		t.Fatalf("hostA after deleting all: %v", got)
	}
	if r.m.Len() != 1 {
		t.Fatalf("Len %d, want hostB's 1", r.m.Len())
	}
}
