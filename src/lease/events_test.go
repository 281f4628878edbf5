package lease_test

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/policy"
)

// recorder collects the events OnChange reports.
type recorder struct {
	mu  sync.Mutex
	evs []lease.Event
}

func (r *recorder) add(ev lease.Event) {
	r.mu.Lock()
	r.evs = append(r.evs, ev)
	r.mu.Unlock()
}

// take returns the events so far, as "kind proto/port count reason".
func (r *recorder) take() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, ev := range r.evs {
		s := fmt.Sprintf("%s %s/%d %d", ev.Kind, ev.Lease.Proto, ev.Lease.ExternalPort, ev.Count)
		if ev.Reason != "" {
			s += " " + ev.Reason
		}
		out = append(out, s)
	}
	r.evs = nil
	return out
}

func checkEvents(t *testing.T, got []string, want ...string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("events\n got %q\nwant %q", got, want)
	}
}

// TestOnChangeReportsEveryChange: create, renew, release, administrative
// delete, delete-all, expiry and policy removal each report one event with
// the table size after it; refusals and restores report nothing.
func TestOnChangeReportsEveryChange(t *testing.T) {
	rec := &recorder{}
	r := newRig(t, func(c *lease.Config) { c.OnChange = rec.add })

	if _, _, err := r.m.Restore([]lease.Lease{{Proto: firewall.UDP, ExternalPort: 5000, InternalAddr: hostB, InternalPort: 5000,
		Client: hostB, Origin: lease.OriginNATPMP, Lifetime: time.Hour, Expires: t0.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	checkEvents(t, rec.take())

	mustMap := func(req lease.Request) {
		t.Helper()
		if _, err := r.m.Map(req); err != nil {
			t.Fatal(err)
		}
	}
	mustMap(natpmp(hostA, firewall.TCP, 8080, 8080, 10*time.Minute))
	mustMap(natpmp(hostA, firewall.TCP, 8080, 8080, 20*time.Minute))
	mustMap(natpmp(hostA, firewall.TCP, 8080, 8080, 0))
	checkEvents(t, rec.take(), "created tcp/8080 2", "renewed tcp/8080 2", "removed tcp/8080 1 released by client")

	// Refused: port 80 is outside the policy; nothing is reported.
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 80, 80, time.Minute)); err == nil {
		t.Fatal("port 80 granted")
	}
	// Deleting what is not there changes nothing.
	mustMap(natpmp(hostA, firewall.TCP, 8081, 8081, 0))
	checkEvents(t, rec.take())

	mustMap(natpmp(hostA, firewall.UDP, 9000, 9000, 10*time.Minute))
	mustMap(natpmp(hostA, firewall.UDP, 9001, 9001, 10*time.Minute))
	if _, err := r.m.Delete(lease.Key{Proto: firewall.UDP, ExternalPort: 9000}, "deleted by administrator"); err != nil {
		t.Fatal(err)
	}
	if n, err := r.m.DeleteAll(hostA, firewall.UDP, lease.OriginNATPMP); err != nil || n != 1 {
		t.Fatalf("DeleteAll = %d, %v", n, err)
	}
	checkEvents(t, rec.take(), "created udp/9000 2", "created udp/9001 3", "removed udp/9000 2 deleted by administrator",
		"removed udp/9001 1 released by client (all)")

	// The restored lease expires within the hour.
	r.clk.Advance(time.Hour)
	if n, err := r.m.ExpireDue(); err != nil || n != 1 {
		t.Fatalf("ExpireDue = %d, %v", n, err)
	}
	checkEvents(t, rec.take(), "removed udp/5000 0 "+lease.ReasonExpired)

	// A renewal the policy no longer allows removes the lease.
	mustMap(natpmp(hostA, firewall.TCP, 8080, 8080, 10*time.Minute))
	r.m.SetPolicy(&policy.Policy{})
	if _, err := r.m.Map(natpmp(hostA, firewall.TCP, 8080, 8080, 10*time.Minute)); err == nil {
		t.Fatal("renewal allowed by an empty policy")
	}
	checkEvents(t, rec.take(), "created tcp/8080 1", "removed tcp/8080 0 no longer allowed by policy")
}

// TestOnChangeHoldsNoLock: OnChange may call the Manager, even to change
// leases; those changes are reported after the current one.
func TestOnChangeHoldsNoLock(t *testing.T) {
	rec := &recorder{}
	var m *lease.Manager
	r := newRig(t, func(c *lease.Config) {
		c.OnChange = func(ev lease.Event) {
			rec.add(ev)
			if m.Len() != ev.Count || len(m.List()) != ev.Count {
				t.Errorf("in OnChange: Len %d, event count %d", m.Len(), ev.Count)
			}
			if ev.Kind == lease.Created && ev.Lease.ExternalPort == 8080 {
				// Deadlocks if OnChange runs under opMu or mu.
				if _, err := m.Delete(ev.Lease.Key(), "deleted by hook"); err != nil {
					t.Errorf("Delete in OnChange: %v", err)
				}
			}
		}
	})
	m = r.m
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := m.Map(natpmp(hostA, firewall.TCP, 8080, 8080, time.Minute)); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Map did not return: OnChange was called with a lock held")
	}
	checkEvents(t, rec.take(), "created tcp/8080 1", "removed tcp/8080 0 deleted by hook")
}

// TestOnChangeOrderUnderConcurrency: however goroutines race, events arrive
// in the order of the changes, so each event's count is the previous one
// plus one (created), minus one (removed) or the same (renewed). Run with
// -race.
func TestOnChangeOrderUnderConcurrency(t *testing.T) {
	var mu sync.Mutex
	var evs []lease.Event
	r := newRig(t, func(c *lease.Config) {
		c.MaxPerHost = 1000
		c.MaxLeases = 1000
		c.OnChange = func(ev lease.Event) {
			mu.Lock()
			evs = append(evs, ev)
			mu.Unlock()
		}
	})
	const workers, rounds = 8, 50
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			host := netip.AddrFrom4([4]byte{198, 51, 100, byte(20 + w)})
			for i := range rounds {
				port := uint16(2000 + w*100 + i%5)
				for _, life := range []time.Duration{time.Minute, 2 * time.Minute, 0} {
					if _, err := r.m.Map(natpmp(host, firewall.TCP, port, port, life)); err != nil {
						t.Error(err)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	mu.Lock()
	defer mu.Unlock()
	if want := workers * rounds * 3; len(evs) != want {
		t.Fatalf("%d events, want %d", len(evs), want)
	}
	count := 0
	live := map[lease.Key]bool{}
	for i, ev := range evs {
		switch ev.Kind {
		case lease.Created:
			count++
			if live[ev.Lease.Key()] {
				t.Fatalf("event %d: created %v twice", i, ev.Lease.Key())
			}
			live[ev.Lease.Key()] = true
		case lease.Removed:
			count--
			if !live[ev.Lease.Key()] {
				t.Fatalf("event %d: removed %v before it was created", i, ev.Lease.Key())
			}
			delete(live, ev.Lease.Key())
		case lease.Renewed:
			if !live[ev.Lease.Key()] {
				t.Fatalf("event %d: renewed %v before it was created", i, ev.Lease.Key())
			}
		}
		if ev.Count != count {
			t.Fatalf("event %d (%s): count %d, want %d: events out of order", i, ev.Kind, ev.Count, count)
		}
	}
	if count != 0 || r.m.Len() != 0 {
		t.Errorf("%d leases left (events say %d)", r.m.Len(), count)
	}
}

func TestEventKindString(t *testing.T) {
	for k, want := range map[lease.EventKind]string{lease.Created: "created", lease.Renewed: "renewed", lease.Removed: "removed", 0: "unknown"} {
		if k.String() != want {
			t.Errorf("%d.String() = %q, want %q", k, k.String(), want)
		}
	}
}

// TestOnChangeMayMap: OnChange may make a request itself; with requests
// carried out in batches, it must not wait for the batch that reports to it.
func TestOnChangeMayMap(t *testing.T) {
	rec := &recorder{}
	var m *lease.Manager
	r := newRig(t, func(c *lease.Config) {
		c.OnChange = func(ev lease.Event) {
			rec.add(ev)
			if ev.Kind == lease.Created && ev.Lease.ExternalPort == 8080 {
				if _, err := m.Map(natpmp(hostA, firewall.TCP, 8081, 8081, time.Minute)); err != nil {
					t.Errorf("Map in OnChange: %v", err)
				}
			}
		}
	})
	m = r.m
	done := make(chan struct{})
	go func() {
		defer close(done)
		if _, err := m.Map(natpmp(hostA, firewall.TCP, 8080, 8080, time.Minute)); err != nil {
			t.Error(err)
		}
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Map did not return: OnChange waited for the batch that called it")
	}
	checkEvents(t, rec.take(), "created tcp/8080 1", "created tcp/8081 2")
}
