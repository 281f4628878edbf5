package lease_test

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock/clocktest"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/policy"
)

var (
	hostA = netip.MustParseAddr("198.51.100.10")
	hostB = netip.MustParseAddr("198.51.100.11")
	t0    = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
)

func defaultPolicy() *policy.Policy {
	return &policy.Policy{
		Rules: []policy.Rule{{
			Action:   policy.Allow,
			UseLAN:   true,
			IntPorts: policy.PortRange{First: 1024, Last: 65535},
			ExtPorts: policy.PortRange{First: 1024, Last: 65535},
		}},
		LANPrefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
	}
}

type rig struct {
	m   *lease.Manager
	fw  *leasetest.Firewall
	st  *leasetest.Store
	clk *clocktest.Fake
}

func newRig(t *testing.T, mod func(*lease.Config)) *rig {
	t.Helper()
	r := &rig{fw: leasetest.NewFirewall(), st: leasetest.NewStore(), clk: clocktest.NewFake(t0)}
	cfg := lease.Config{
		MinLifetime: 60 * time.Second,
		MaxLifetime: time.Hour,
		MaxPerHost:  4,
		MaxLeases:   8,
		Policy:      defaultPolicy(),
		Clock:       r.clk,
		Firewall:    r.fw,
		Store:       r.st,
	}
	if mod != nil {
		mod(&cfg)
	}
	r.m = lease.New(cfg)
	return r
}

func natpmp(client netip.Addr, proto firewall.Proto, in, ext uint16, life time.Duration) lease.Request {
	return lease.Request{Origin: lease.OriginNATPMP, Proto: proto, Client: client, InternalAddr: client,
		InternalPort: in, SuggestedPort: ext, Lifetime: life}
}

func pcp(client netip.Addr, nonce byte, in, ext uint16, life time.Duration) lease.Request {
	r := natpmp(client, firewall.TCP, in, ext, life)
	r.Origin = lease.OriginPCP
	r.Nonce[0] = nonce
	return r
}

func TestCreateGrantsSuggestedPortAndStoresFirst(t *testing.T) {
	r := newRig(t, nil)
	l, err := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 9000, 10*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if l.ExternalPort != 9000 || l.InternalPort != 8080 || l.InternalAddr != hostA {
		t.Fatalf("granted %+v", l)
	}
	if l.Lifetime != 10*time.Minute || !l.Expires.Equal(t0.Add(10*time.Minute)) {
		t.Fatalf("lifetime %v expires %v", l.Lifetime, l.Expires)
	}
	if _, ok := r.st.Get(l.Key()); !ok {
		t.Fatal("lease not in store")
	}
	p, ok := r.fw.Get(l.Key())
	if !ok || p.InternalAddr != hostA || p.InternalPort != 8080 {
		t.Fatalf("pinhole %+v %v", p, ok)
	}
}

func TestTakenSuggestedPortGetsAnother(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 9000, time.Minute)); err != nil {
		t.Fatal(err)
	}
	l, err := r.m.Map(natpmp(hostB, firewall.TCP, 8080, 9000, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if l.ExternalPort == 9000 || l.ExternalPort < 1024 {
		t.Fatalf("second host got port %d", l.ExternalPort)
	}
	// Same port, other protocol: free.
	l, err = r.m.Map(natpmp(hostB, firewall.UDP, 8080, 9000, time.Minute))
	if err != nil || l.ExternalPort != 9000 {
		t.Fatalf("udp: %v %v", l.ExternalPort, err)
	}
}

func TestPreferFailure(t *testing.T) {
	r := newRig(t, nil)
	if _, err := r.m.Map(pcp(hostA, 1, 8080, 9000, time.Minute)); err != nil {
		t.Fatal(err)
	}
	req := pcp(hostB, 2, 8080, 9000, time.Minute)
	req.PreferFailure = true
	if _, err := r.m.Map(req); !errors.Is(err, lease.ErrCannotProvideExternal) {
		t.Fatalf("err = %v, want ErrCannotProvideExternal", err)
	}
	// A suggested port the policy forbids also fails with PREFER_FAILURE.
	req = pcp(hostB, 2, 8080, 80, time.Minute)
	req.PreferFailure = true
	if _, err := r.m.Map(req); !errors.Is(err, lease.ErrCannotProvideExternal) {
		t.Fatalf("err = %v, want ErrCannotProvideExternal", err)
	}
	// Without it, a forbidden suggestion is replaced by an allowed port.
	l, err := r.m.Map(pcp(hostB, 2, 8080, 80, time.Minute))
	if err != nil || l.ExternalPort < 1024 {
		t.Fatalf("got %d, %v", l.ExternalPort, err)
	}
}

func TestPolicyDenies(t *testing.T) {
	r := newRig(t, nil)
	for _, req := range []lease.Request{
		natpmp(hostA, firewall.TCP, 80, 80, time.Minute),                               // internal port below 1024
		natpmp(netip.MustParseAddr("203.0.113.9"), firewall.TCP, 8080, 0, time.Minute), // not a LAN host
	} {
		if _, err := r.m.Map(req); !errors.Is(err, lease.ErrDenied) {
			t.Errorf("%+v: err = %v, want ErrDenied", req, err)
		}
	}
	if r.fw.Len() != 0 || len(r.st.All()) != 0 {
		t.Fatal("denied request changed state")
	}
	if c := r.m.Counters(); c.Refused != 2 {
		t.Fatalf("refused = %d", c.Refused)
	}
}

func TestThirdPartyNeedsRule(t *testing.T) {
	r := newRig(t, nil)
	req := natpmp(hostA, firewall.TCP, 8080, 0, time.Minute)
	req.Origin = lease.OriginPCP
	req.InternalAddr = hostB
	if _, err := r.m.Map(req); !errors.Is(err, lease.ErrDenied) {
		t.Fatalf("third party without rule: %v", err)
	}
	pol := defaultPolicy()
	pol.Rules[0].ThirdParty = true
	r.m.SetPolicy(pol)
	l, err := r.m.Map(req)
	if err != nil || l.InternalAddr != hostB || l.Client != hostA {
		t.Fatalf("third party with rule: %+v %v", l, err)
	}
}

func TestRenewKeepsPortAndNonceEnforced(t *testing.T) {
	r := newRig(t, nil)
	l1, err := r.m.Map(pcp(hostA, 7, 8080, 9000, 2*time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	writes := r.st.Writes
	r.clk.Advance(time.Minute)
	// Renewal suggesting another port keeps the granted one.
	l2, err := r.m.Map(pcp(hostA, 7, 8080, 9999, 2*time.Minute))
	if err != nil || l2.ExternalPort != l1.ExternalPort {
		t.Fatalf("renew: %+v %v", l2, err)
	}
	if !l2.Expires.Equal(t0.Add(3 * time.Minute)) {
		t.Fatalf("renewed expiry %v", l2.Expires)
	}
	if r.st.Writes != writes {
		t.Fatalf("a plain renewal wrote the store (%d -> %d)", writes, r.st.Writes)
	}
	// Wrong nonce: refused for renewal and for deletion.
	if _, err := r.m.Map(pcp(hostA, 8, 8080, 0, 2*time.Minute)); !errors.Is(err, lease.ErrNotAuthorized) {
		t.Fatalf("wrong nonce renew: %v", err)
	}
	if _, err := r.m.Map(pcp(hostA, 8, 8080, 0, 0)); !errors.Is(err, lease.ErrNotAuthorized) {
		t.Fatalf("wrong nonce delete: %v", err)
	}
	// NAT-PMP cannot touch a PCP mapping.
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 0, 0)); !errors.Is(err, lease.ErrNotAuthorized) {
		t.Fatalf("natpmp delete of pcp mapping: %v", err)
	}
	if _, ok := r.fw.Get(l1.Key()); !ok {
		t.Fatal("refused delete removed the pinhole")
	}
	if _, err := r.m.Map(pcp(hostA, 7, 8080, 0, 0)); err != nil {
		t.Fatalf("right nonce delete: %v", err)
	}
	if _, ok := r.fw.Get(l1.Key()); ok {
		t.Fatal("pinhole still installed after delete")
	}
	if _, ok := r.st.Get(l1.Key()); ok {
		t.Fatal("lease still stored after delete")
	}
	// Deleting again is not an error.
	if _, err := r.m.Map(pcp(hostA, 7, 8080, 0, 0)); err != nil {
		t.Fatalf("second delete: %v", err)
	}
}

func TestRenewWithNewFiltersAndDescriptionIsStored(t *testing.T) {
	r := newRig(t, nil)
	req := pcp(hostA, 1, 8080, 9000, time.Minute)
	if _, err := r.m.Map(req); err != nil {
		t.Fatal(err)
	}
	req.Filters = []firewall.Filter{{Prefix: netip.MustParsePrefix("203.0.113.0/28"), Port: 0}}
	req.Description = "web"
	req.HasDescription = true
	if _, err := r.m.Map(req); err != nil {
		t.Fatal(err)
	}
	k := firewall.Key{Proto: firewall.TCP, ExternalPort: 9000}
	if l, _ := r.st.Get(k); l.Description != "web" || len(l.Filters) != 1 {
		t.Fatalf("stored %+v", l)
	}
	if p, _ := r.fw.Get(k); len(p.Filters) != 1 {
		t.Fatalf("pinhole filters %+v", p.Filters)
	}
}

func TestLifetimeClamped(t *testing.T) {
	r := newRig(t, nil)
	l, _ := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 0, time.Second))
	if l.Lifetime != time.Minute {
		t.Fatalf("short lifetime granted %v", l.Lifetime)
	}
	l, _ = r.m.Map(natpmp(hostA, firewall.UDP, 8080, 0, 100*time.Hour))
	if l.Lifetime != time.Hour {
		t.Fatalf("long lifetime granted %v", l.Lifetime)
	}
}

func TestQuotas(t *testing.T) {
	r := newRig(t, nil)
	for i := range 4 {
		if _, err := r.m.Map(natpmp(hostA, firewall.TCP, uint16(2000+i), 0, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 3000, 0, time.Minute)); !errors.Is(err, lease.ErrQuota) {
		t.Fatalf("fifth lease for one host: %v", err)
	}
	// Renewing an existing one is not blocked by the quota.
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute)); err != nil {
		t.Fatalf("renewal at quota: %v", err)
	}
	for i := range 4 {
		if _, err := r.m.Map(natpmp(hostB, firewall.TCP, uint16(2000+i), 0, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	hostC := netip.MustParseAddr("198.51.100.12")
	if _, err := r.m.Map(natpmp(hostC, firewall.TCP, 3000, 0, time.Minute)); !errors.Is(err, lease.ErrNoResources) {
		t.Fatalf("ninth lease overall: %v", err)
	}
}

func TestNoFreePort(t *testing.T) {
	r := newRig(t, func(c *lease.Config) {
		c.Policy.Rules[0].ExtPorts = policy.PortRange{First: 5000, Last: 5001}
	})
	for i := range 2 {
		if _, err := r.m.Map(natpmp(hostA, firewall.TCP, uint16(2000+i), 0, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2002, 0, time.Minute)); !errors.Is(err, lease.ErrNoResources) {
		t.Fatalf("full range: %v", err)
	}
}

func TestExpiry(t *testing.T) {
	r := newRig(t, nil)
	a, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute))
	b, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2001, 0, 2*time.Minute))
	r.clk.Advance(59 * time.Second)
	if n, _ := r.m.ExpireDue(); n != 0 {
		t.Fatalf("expired %d early", n)
	}
	r.clk.Advance(time.Second)
	if n, _ := r.m.ExpireDue(); n != 1 {
		t.Fatalf("expired %d at the first deadline", n)
	}
	if _, ok := r.fw.Get(a.Key()); ok {
		t.Fatal("expired pinhole still installed")
	}
	if _, ok := r.fw.Get(b.Key()); !ok {
		t.Fatal("live pinhole removed")
	}
	if r.m.Counters().Expired != 1 {
		t.Fatal("expiry not counted")
	}
}

func TestRunExpiresOnTimer(t *testing.T) {
	r := newRig(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.m.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	l, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute))
	// Advance only once Run is waiting on a timer for the new lease.
	waitFor(t, func() bool { return r.clk.Pending() > 0 })
	r.clk.Advance(time.Minute)
	waitFor(t, func() bool { _, ok := r.fw.Get(l.Key()); return !ok })
}

// waitFor polls cond (the expiry goroutine runs concurrently); bounded.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 2000 {
		if cond() {
			return
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatal("condition not met within 2 s")
}

func TestCheckpointWritesRenewedExpiries(t *testing.T) {
	r := newRig(t, nil)
	l, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, 10*time.Minute))
	r.clk.Advance(5 * time.Minute)
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, 10*time.Minute)); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("stored expiry moved before checkpoint: %v", s.Expires)
	}
	if err := r.m.Checkpoint(); err != nil {
		t.Fatal(err)
	}
	if s, _ := r.st.Get(l.Key()); !s.Expires.Equal(t0.Add(15 * time.Minute)) {
		t.Fatalf("stored expiry after checkpoint: %v", s.Expires)
	}
	w := r.st.Writes
	if err := r.m.Checkpoint(); err != nil || r.st.Writes != w {
		t.Fatalf("clean checkpoint wrote (%v)", err)
	}
}

func TestRestoreBoundsLifetime(t *testing.T) {
	r := newRig(t, nil)
	mk := func(port uint16, life time.Duration, expires time.Time) lease.Lease {
		return lease.Lease{Proto: firewall.TCP, ExternalPort: port, InternalAddr: hostA, InternalPort: port,
			Client: hostA, Origin: lease.OriginNATPMP, Lifetime: life, Expires: expires}
	}
	ls := []lease.Lease{
		mk(2000, 10*time.Minute, t0.Add(5*time.Minute)),    // normal: 5 minutes left
		mk(2001, 10*time.Minute, t0.Add(-time.Second)),     // expired while down
		mk(2002, 10*time.Minute, t0.Add(24*365*time.Hour)), // clock went backwards: capped
	}
	for _, l := range ls {
		_ = r.st.Put(l)
	}
	n, dropped, err := r.m.Restore(ls)
	if err != nil || n != 2 || dropped != 1 {
		t.Fatalf("restored %d dropped %d err %v", n, dropped, err)
	}
	if _, ok := r.st.Get(ls[1].Key()); ok {
		t.Fatal("expired lease kept in store")
	}
	got, _ := r.m.Get(ls[2].Key())
	if !got.Expires.Equal(t0.Add(10 * time.Minute)) {
		t.Fatalf("capped lease expires %v", got.Expires)
	}
	r.clk.Advance(5 * time.Minute)
	if n, _ := r.m.ExpireDue(); n != 1 {
		t.Fatalf("expired %d after 5 min", n)
	}
	r.clk.Advance(5 * time.Minute)
	if n, _ := r.m.ExpireDue(); n != 1 {
		t.Fatalf("expired %d after 10 min", n)
	}
	if len(r.m.Pinholes()) != 0 {
		t.Fatal("leases left")
	}
}

// TestRestoreDropsNonIPv4 checks that a stored lease forwarding to an
// address that is not IPv4 (which Map never grants) is dropped.
func TestRestoreDropsNonIPv4(t *testing.T) {
	r := newRig(t, nil)
	v6 := netip.MustParseAddr("2001:db8::10")
	ls := []lease.Lease{
		{Proto: firewall.TCP, ExternalPort: 2000, InternalAddr: v6, InternalPort: 2000, Client: v6,
			Origin: lease.OriginPCP, Lifetime: 10 * time.Minute, Expires: t0.Add(5 * time.Minute)},
		{Proto: firewall.TCP, ExternalPort: 2001, InternalAddr: hostA, InternalPort: 2001, Client: hostA,
			Origin: lease.OriginNATPMP, Lifetime: 10 * time.Minute, Expires: t0.Add(5 * time.Minute)},
	}
	n, dropped, err := r.m.Restore(ls)
	if err != nil || n != 1 || dropped != 1 {
		t.Fatalf("restored %d dropped %d err %v; want 1 and 1", n, dropped, err)
	}
	if _, ok := r.m.Get(ls[0].Key()); ok {
		t.Fatal("the IPv6 lease was restored")
	}
}

func TestFirewallFailureLeavesNoState(t *testing.T) {
	r := newRig(t, nil)
	r.fw.Fail = leasetest.ErrInjected
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute)); !errors.Is(err, lease.ErrFailure) {
		t.Fatalf("err = %v", err)
	}
	if len(r.st.All()) != 0 || r.m.Len() != 0 {
		t.Fatal("failed create left state behind")
	}
	r.fw.Fail = nil
	r.st.Fail = leasetest.ErrInjected
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute)); !errors.Is(err, lease.ErrFailure) {
		t.Fatalf("err = %v", err)
	}
	if r.fw.Len() != 0 || r.m.Len() != 0 {
		t.Fatal("store failure left a pinhole")
	}
}

func TestDeleteAllAndAdminDelete(t *testing.T) {
	r := newRig(t, nil)
	for i := range 3 {
		r.m.Map(natpmp(hostA, firewall.UDP, uint16(2000+i), 0, time.Minute))
	}
	tcp, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute))
	other, _ := r.m.Map(natpmp(hostB, firewall.UDP, 2000, 0, time.Minute))
	n, err := r.m.DeleteAll(hostA, firewall.UDP, lease.OriginNATPMP)
	if err != nil || n != 3 {
		t.Fatalf("deleted %d, %v", n, err)
	}
	if r.m.Len() != 2 {
		t.Fatalf("left %d", r.m.Len())
	}
	if _, err := r.m.Delete(other.Key(), "admin"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.m.Delete(other.Key(), "admin"); !errors.Is(err, lease.ErrNotFound) {
		t.Fatalf("second admin delete: %v", err)
	}
	if _, ok := r.m.Get(tcp.Key()); !ok {
		t.Fatal("tcp lease removed")
	}
}

func TestInvalidRequests(t *testing.T) {
	r := newRig(t, nil)
	bad := natpmp(hostA, firewall.Proto(1), 2000, 0, time.Minute)
	if _, err := r.m.Map(bad); !errors.Is(err, lease.ErrUnsupportedProtocol) {
		t.Fatalf("icmp: %v", err)
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 0, 0, time.Minute)); !errors.Is(err, lease.ErrBadRequest) {
		t.Fatalf("port 0: %v", err)
	}
}

func TestFailedRemovalsAreRetried(t *testing.T) {
	r := newRig(t, nil)
	a, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2000, 0, time.Minute))
	b, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2001, 0, time.Minute))
	r.clk.Advance(time.Minute)
	r.st.Fail = leasetest.ErrInjected
	if n, err := r.m.ExpireDue(); n != 0 || err == nil {
		t.Fatalf("expired %d with a failing store (err %v)", n, err)
	}
	r.st.Fail = nil
	if n, err := r.m.ExpireDue(); n != 2 || err != nil {
		t.Fatalf("retry expired %d (err %v)", n, err)
	}
	// A firewall that fails to remove a rule is re-synced later.
	c, _ := r.m.Map(natpmp(hostA, firewall.TCP, 2002, 0, time.Minute))
	r.fw.Fail = leasetest.ErrInjected
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 2002, 0, 0)); err != nil {
		t.Fatalf("delete with a failing firewall: %v", err)
	}
	r.fw.Fail = nil
	if _, ok := r.fw.Get(c.Key()); !ok {
		t.Fatal("test set-up: rule should still be installed")
	}
	if err := r.m.SyncFirewall(); err != nil {
		t.Fatal(err)
	}
	for _, k := range []lease.Key{a.Key(), b.Key(), c.Key()} {
		if _, ok := r.fw.Get(k); ok {
			t.Fatalf("stale rule %v left after sync", k)
		}
	}
}
