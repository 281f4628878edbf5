package lease_test

import (
	"errors"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/policy"
)

// keyed returns r as authenticated by the key named key.
func keyed(r lease.Request, key string) lease.Request {
	r.Auth = key
	return r
}

// TestLeaseKeepsItsKey: a lease made with a key records it, and only
// requests with the same key may renew or delete it; an unauthenticated
// lease is not taken over by a keyed request either.
func TestLeaseKeepsItsKey(t *testing.T) {
	r := newRig(t, func(c *lease.Config) { c.Policy.Rules = policy.DefaultRules() })
	l, err := r.m.Map(keyed(pcp(hostA, 1, 80, 80, 10*time.Minute), "alice"))
	if err != nil {
		t.Fatal(err)
	}
	if l.Auth != "alice" || l.ExternalPort != 80 {
		t.Fatalf("lease %+v, want port 80 with key alice", l)
	}
	if got := r.st.All()[0].Auth; got != "alice" {
		t.Fatalf("stored lease has key %q", got)
	}
	for _, req := range []lease.Request{
		pcp(hostA, 1, 80, 80, 10*time.Minute),               // no key: renew
		pcp(hostA, 1, 80, 80, 0),                            // no key: delete
		keyed(pcp(hostA, 1, 80, 80, 10*time.Minute), "bob"), // other key: renew
		keyed(pcp(hostA, 1, 80, 80, 0), "bob"),              // other key: delete
	} {
		if _, err := r.m.Map(req); !errors.Is(err, lease.ErrNotAuthorized) {
			t.Fatalf("Map(%+v) = %v, want ErrNotAuthorized", req, err)
		}
	}
	if _, err := r.m.Map(keyed(pcp(hostA, 1, 80, 80, 20*time.Minute), "alice")); err != nil {
		t.Fatalf("renewal with the same key: %v", err)
	}
	if _, err := r.m.Map(keyed(pcp(hostA, 1, 80, 80, 0), "alice")); err != nil {
		t.Fatalf("deletion with the same key: %v", err)
	}
	if r.m.Len() != 0 {
		t.Fatal("lease not deleted")
	}

	// Without a key, port 80 is refused by the shipped rules, 8080 is not;
	// that lease then stays unauthenticated.
	if _, err := r.m.Map(pcp(hostA, 2, 80, 80, 10*time.Minute)); !errors.Is(err, lease.ErrDenied) {
		t.Fatalf("unauthenticated port 80: %v, want ErrDenied", err)
	}
	if _, err := r.m.Map(pcp(hostA, 2, 8080, 8080, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Map(keyed(pcp(hostA, 2, 8080, 8080, 10*time.Minute), "alice")); !errors.Is(err, lease.ErrNotAuthorized) {
		t.Fatalf("keyed renewal of an unauthenticated lease: %v, want ErrNotAuthorized", err)
	}
}
