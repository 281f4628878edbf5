package lease_test

import (
	"errors"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
)

// gateStore is leasetest's store whose first Apply blocks until released,
// so that a test can queue requests behind a batch in progress.
type gateStore struct {
	*leasetest.Store
	once    sync.Once
	entered chan struct{} // closed when the first Apply has begun
	release chan struct{} // closed by the test to let it finish
	mu      sync.Mutex
	sizes   []int // changes per Apply call
}

func newGateStore() *gateStore {
	return &gateStore{Store: leasetest.NewStore(), entered: make(chan struct{}), release: make(chan struct{})}
}

func (g *gateStore) Apply(puts []lease.Lease, dels []lease.Key) error {
	g.once.Do(func() {
		close(g.entered)
		<-g.release
	})
	g.mu.Lock()
	g.sizes = append(g.sizes, len(puts)+len(dels))
	g.mu.Unlock()
	return g.Store.Apply(puts, dels)
}

func (g *gateStore) applies() []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.sizes...)
}

// queued starts each request in its own goroutine while the first batch is
// held in the store, waits until all of them are queued behind it, and
// releases it. It returns the results in request order.
func queued(t *testing.T, m *lease.Manager, g *gateStore, first lease.Request, rs []lease.Request) ([]lease.Lease, []error) {
	t.Helper()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := m.Map(first); err != nil {
			t.Errorf("first request: %v", err)
		}
	}()
	select {
	case <-g.entered:
	case <-time.After(10 * time.Second):
		t.Fatal("the first request never reached the store")
	}
	ls, errs := make([]lease.Lease, len(rs)), make([]error, len(rs))
	for i, r := range rs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ls[i], errs[i] = m.Map(r)
		}()
		// Requests queue in the order they call Map: wait for this one
		// to be queued before starting the next.
		deadline := time.Now().Add(10 * time.Second)
		for m.Queued() < i+1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
		if m.Queued() < i+1 {
			t.Fatalf("request %d never queued", i)
		}
	}
	close(g.release)
	wg.Wait()
	return ls, errs
}

// TestBatchSharesOneWrite checks group commit: requests that arrive while
// a write is in progress are carried out together, one store transaction
// and one firewall batch for all of them, each with its own correct result.
func TestBatchSharesOneWrite(t *testing.T) {
	g := newGateStore()
	r := newRig(t, func(c *lease.Config) { c.Store = g; c.MaxLeases = 64; c.MaxPerHost = 64 })
	var rs []lease.Request
	for i := range 20 {
		rs = append(rs, natpmp(hostB, firewall.TCP, uint16(5000+i), uint16(6000+i), time.Minute))
	}
	calls0 := r.fw.Calls
	ls, errs := queued(t, r.m, g, natpmp(hostA, firewall.TCP, 4000, 4000, time.Minute), rs)
	for i, err := range errs {
		if err != nil || ls[i].ExternalPort != uint16(6000+i) {
			t.Fatalf("request %d: %+v %v", i, ls[i], err)
		}
		if _, ok := r.fw.Get(ls[i].Key()); !ok {
			t.Fatalf("request %d: no pinhole", i)
		}
	}
	if got := g.applies(); len(got) != 2 || got[0] != 1 || got[1] != 20 {
		t.Fatalf("store writes of %v changes, want [1 20]", got)
	}
	if n := r.fw.Calls - calls0; n != 2 {
		t.Fatalf("%d firewall calls for two batches", n)
	}
	if r.m.Len() != 21 {
		t.Fatalf("%d leases", r.m.Len())
	}
}

// TestBatchSeesEarlierRequests checks that requests decided together see
// each other as if they came one by one: a port one takes is not granted
// again, quotas count the batch, a renewal and a delete of a lease created
// in the same burst see it, and a suggested port another request frees is
// granted once it is free.
func TestBatchSeesEarlierRequests(t *testing.T) {
	g := newGateStore()
	r := newRig(t, func(c *lease.Config) { c.Store = g; c.MaxLeases = 64; c.MaxPerHost = 3 })
	hostC := netip.MustParseAddr("198.51.100.12")
	// An existing lease of host C on port 7000, made before the burst.
	g.once.Do(func() { close(g.entered) }) // not gated yet
	old, err := r.m.Map(natpmp(hostC, firewall.TCP, 7000, 7000, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	g.once = sync.Once{}
	g.entered = make(chan struct{})
	rs := []lease.Request{
		natpmp(hostB, firewall.TCP, 5000, 9000, time.Minute), // 0: gets 9000
		natpmp(hostA, firewall.TCP, 5001, 9000, time.Minute), // 1: 9000 taken by 0: another port
		natpmp(hostB, firewall.TCP, 5002, 0, time.Minute),    // 2
		natpmp(hostB, firewall.TCP, 5003, 0, time.Minute),    // 3: B's third (quota 3)
		natpmp(hostB, firewall.TCP, 5004, 0, time.Minute),    // 4: B's fourth: quota
		natpmp(hostB, firewall.TCP, 5000, 9000, 0),           // 5: deletes 0's lease
		natpmp(hostC, firewall.TCP, 7000, 7000, 0),           // 6: deletes C's old lease
		natpmp(hostC, firewall.UDP, 7000, 7000, time.Minute), // 7: other protocol: free anyway
		natpmp(hostC, firewall.TCP, 7001, 7000, time.Minute), // 8: port 7000 just freed by 6
	}
	rs[8].PreferFailure = true
	ls, errs := queued(t, r.m, g, natpmp(hostA, firewall.TCP, 4000, 4000, time.Minute), rs)
	want := func(i int, port uint16) {
		t.Helper()
		if errs[i] != nil || ls[i].ExternalPort != port {
			t.Errorf("request %d: port %d err %v, want port %d", i, ls[i].ExternalPort, errs[i], port)
		}
	}
	want(0, 9000)
	if errs[1] != nil || ls[1].ExternalPort == 9000 || ls[1].ExternalPort == 0 {
		t.Errorf("request 1: %+v %v", ls[1], errs[1])
	}
	if errs[2] != nil || errs[3] != nil {
		t.Errorf("requests 2, 3: %v %v", errs[2], errs[3])
	}
	if !errors.Is(errs[4], lease.ErrQuota) {
		t.Errorf("request 4: %v, want quota", errs[4])
	}
	want(5, 9000) // the removed lease
	want(6, old.ExternalPort)
	want(7, 7000)
	want(8, 7000)
	if _, ok := r.m.Get(lease.Key{Proto: firewall.TCP, ExternalPort: 9000}); ok {
		t.Error("lease 9000 still in the table")
	}
	if l, ok := r.m.Get(lease.Key{Proto: firewall.TCP, ExternalPort: 7000}); !ok || l.InternalPort != 7001 {
		t.Errorf("tcp/7000 is %+v %v, want the new lease to port 7001", l, ok)
	}
	// Table, store and firewall agree.
	for _, l := range r.m.List() {
		if _, ok := g.Get(l.Key()); !ok {
			t.Errorf("%v not stored", l.Key())
		}
		if _, ok := r.fw.Get(l.Key()); !ok {
			t.Errorf("%v not installed", l.Key())
		}
	}
	if n := len(g.All()); n != r.m.Len() {
		t.Errorf("store holds %d, table %d", n, r.m.Len())
	}
	if n := r.fw.Len(); n != r.m.Len() {
		t.Errorf("firewall holds %d, table %d", n, r.m.Len())
	}
}

// failingFirewall fails every batch and the single changes for one port.
type failingFirewall struct {
	*leasetest.Firewall
	badPort uint16
}

var errBad = errors.New("port refused by the kernel")

func (f *failingFirewall) Apply([]firewall.Pinhole, []firewall.Key) error { return errBad }

func (f *failingFirewall) Add(p firewall.Pinhole) error {
	if p.ExternalPort == f.badPort {
		return errBad
	}
	return f.Firewall.Add(p)
}

// TestBatchFailures checks that a firewall batch that fails is redone one
// change at a time, so that only the request whose change fails fails (and
// its stored lease is taken back), and that a failed store write fails the
// whole batch and changes nothing; each failure is counted as the
// firewall's or the store's.
func TestBatchFailures(t *testing.T) {
	g := newGateStore()
	fw := &failingFirewall{Firewall: leasetest.NewFirewall(), badPort: 9002}
	r := newRig(t, func(c *lease.Config) { c.Store = g; c.Firewall = fw; c.MaxLeases = 64; c.MaxPerHost = 64 })
	var rs []lease.Request
	for i := range 4 {
		rs = append(rs, natpmp(hostB, firewall.TCP, uint16(5000+i), uint16(9000+i), time.Minute))
	}
	rs[2].PreferFailure = true
	ls, errs := queued(t, r.m, g, natpmp(hostA, firewall.TCP, 4000, 4000, time.Minute), rs)
	for i := range rs {
		if i == 2 {
			if !errors.Is(errs[i], lease.ErrFailure) || !errors.Is(errs[i], errBad) {
				t.Errorf("request 2: %v, want the firewall's failure", errs[i])
			}
			if _, ok := g.Get(lease.Key{Proto: firewall.TCP, ExternalPort: 9002}); ok {
				t.Error("failed lease left in the store")
			}
			continue
		}
		if errs[i] != nil || ls[i].ExternalPort != uint16(9000+i) {
			t.Errorf("request %d: %+v %v", i, ls[i], errs[i])
		}
	}
	if r.m.Len() != 4 {
		t.Errorf("%d leases, want 4", r.m.Len())
	}
	if c := r.m.Counters(); c.FirewallFailures != 1 || c.StoreFailures != 0 {
		t.Errorf("after one firewall failure: %d firewall and %d store failures, want 1 and 0", c.FirewallFailures, c.StoreFailures)
	}

	// The store fails: nothing changes, every request that needed it
	// fails, and a plain renewal (no store write) still succeeds.
	g.Fail = leasetest.ErrInjected
	before := r.m.List()
	for _, req := range []lease.Request{
		natpmp(hostA, firewall.TCP, 6000, 0, time.Minute), // create
		natpmp(hostB, firewall.TCP, 5000, 9000, 0),        // delete
	} {
		if _, err := r.m.Map(req); !errors.Is(err, lease.ErrFailure) {
			t.Errorf("%+v with a failing store: %v", req, err)
		}
	}
	if _, err := r.m.Map(natpmp(hostB, firewall.TCP, 5001, 9001, 2*time.Minute)); err != nil {
		t.Errorf("renewal with a failing store: %v", err)
	}
	// An administrator's delete needs the store too.
	if _, err := r.m.Delete(lease.Key{Proto: firewall.TCP, ExternalPort: 9001}, "test"); !errors.Is(err, lease.ErrFailure) {
		t.Errorf("delete with a failing store: %v", err)
	}
	if after := r.m.List(); len(after) != len(before) {
		t.Errorf("table changed from %d to %d leases", len(before), len(after))
	}
	if c := r.m.Counters(); c.FirewallFailures != 1 || c.StoreFailures != 3 {
		t.Errorf("after three store failures: %d firewall and %d store failures, want 1 and 3", c.FirewallFailures, c.StoreFailures)
	}
}

// TestBatchConcurrent hammers the Manager from many goroutines (run it with
// -race): every grant must be unique, quotas exact, and table, store and
// firewall must agree at the end.
func TestBatchConcurrent(t *testing.T) {
	st := leasetest.NewStore()
	r := newRig(t, func(c *lease.Config) { c.Store = st; c.MaxLeases = 115; c.MaxPerHost = 12 })
	const hosts, perHost = 10, 16
	var wg sync.WaitGroup
	var mu sync.Mutex
	granted := map[lease.Key]netip.Addr{}
	var quota, full int
	for h := range hosts {
		client := netip.AddrFrom4([4]byte{198, 51, 100, byte(20 + h)})
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perHost {
				// Suggest ports other hosts suggest too.
				l, err := r.m.Map(natpmp(client, firewall.TCP, uint16(3000+i), uint16(8000+i%4), time.Minute))
				mu.Lock()
				switch {
				case errors.Is(err, lease.ErrQuota):
					quota++
				case errors.Is(err, lease.ErrNoResources):
					full++
				case err != nil:
					t.Errorf("host %v request %d: %v", client, i, err)
				default:
					if other, dup := granted[l.Key()]; dup {
						t.Errorf("%v granted to %v and %v", l.Key(), other, client)
					}
					granted[l.Key()] = client
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	perClient := map[netip.Addr]int{}
	for _, l := range r.m.List() {
		perClient[l.Client]++
		if _, ok := st.Get(l.Key()); !ok {
			t.Errorf("%v not stored", l.Key())
		}
		if _, ok := r.fw.Get(l.Key()); !ok {
			t.Errorf("%v not installed", l.Key())
		}
	}
	for c, n := range perClient {
		if n > 12 {
			t.Errorf("%v holds %d leases, quota 12", c, n)
		}
	}
	if len(st.All()) != r.m.Len() || r.fw.Len() != r.m.Len() {
		t.Errorf("store %d, firewall %d, table %d", len(st.All()), r.fw.Len(), r.m.Len())
	}
	// 10 hosts × 12 allowed each is more than 115 in all: the total
	// limit is reached exactly.
	if r.m.Len() != 115 || len(granted) != 115 {
		t.Errorf("%d leases (%d granted), want the maximum 115", r.m.Len(), len(granted))
	}
	if quota == 0 || full == 0 {
		t.Errorf("%d quota and %d full refusals; the test needs both", quota, full)
	}
}

// TestBatchStoreFailsAfterFirewall checks the store write failing while the
// firewall batch, made at the same time, succeeded: the requests fail and
// the firewall is put back to what the table holds.
func TestBatchStoreFailsAfterFirewall(t *testing.T) {
	r := newRig(t, func(c *lease.Config) { c.MaxLeases = 64; c.MaxPerHost = 64 })
	kept, err := r.m.Map(natpmp(hostA, firewall.TCP, 4000, 4000, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	r.st.Fail = leasetest.ErrInjected
	if _, err := r.m.Map(natpmp(hostB, firewall.TCP, 5000, 5000, time.Minute)); !errors.Is(err, lease.ErrFailure) {
		t.Fatalf("create with a failing store: %v", err)
	}
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 4000, 4000, 0)); !errors.Is(err, lease.ErrFailure) {
		t.Fatalf("delete with a failing store: %v", err)
	}
	if r.fw.Len() != 1 || r.m.Len() != 1 {
		t.Fatalf("firewall holds %d pinholes, table %d leases; want the one kept", r.fw.Len(), r.m.Len())
	}
	if _, ok := r.fw.Get(kept.Key()); !ok {
		t.Fatal("the kept lease's pinhole is gone")
	}
}

// TestBatchFreedCapacity checks requests that depend on a removal planned
// earlier in the same burst: at the total limit, a release makes room for
// another host's new lease, and the port it frees is the new lease's
// natural one (its internal port), which it gets.
func TestBatchFreedCapacity(t *testing.T) {
	g := newGateStore()
	r := newRig(t, func(c *lease.Config) { c.Store = g; c.MaxLeases = 3; c.MaxPerHost = 8 })
	hostC := netip.MustParseAddr("198.51.100.12")
	g.once.Do(func() { close(g.entered) }) // not gated yet
	for _, port := range []uint16{7000, 7001} {
		if _, err := r.m.Map(natpmp(hostC, firewall.TCP, port, port, time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	g.once = sync.Once{}
	g.entered = make(chan struct{})
	rs := []lease.Request{
		natpmp(hostC, firewall.TCP, 7000, 7000, 0),        // frees tcp/7000 and one of three places
		natpmp(hostB, firewall.TCP, 7000, 0, time.Minute), // wants it
	}
	// The gated first request fills the table (3 of 3).
	ls, errs := queued(t, r.m, g, natpmp(hostA, firewall.TCP, 4000, 4000, time.Minute), rs)
	if errs[0] != nil || ls[0].ExternalPort != 7000 {
		t.Fatalf("release: %+v %v", ls[0], errs[0])
	}
	if errs[1] != nil || ls[1].ExternalPort != 7000 || ls[1].Client != hostB {
		t.Fatalf("create after the release: %+v %v, want host B on port 7000", ls[1], errs[1])
	}
	if r.m.Len() != 3 {
		t.Fatalf("%d leases, want 3", r.m.Len())
	}
}
