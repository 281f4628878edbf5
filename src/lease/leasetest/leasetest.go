// Package leasetest provides in-memory stand-ins for the lease manager's
// firewall and store, for fast unit tests. The real kernel and bbolt are
// tested elsewhere.
package leasetest

import (
	"errors"
	"maps"
	"slices"
	"sync"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

// Firewall records pinholes in a map. Set Fail to make every call fail.
type Firewall struct {
	mu    sync.Mutex
	holes map[firewall.Key]firewall.Pinhole
	Calls int
	Fail  error
}

var _ lease.Firewall = (*Firewall)(nil)

// NewFirewall returns an empty fake firewall.
func NewFirewall() *Firewall { return &Firewall{holes: map[firewall.Key]firewall.Pinhole{}} }

// Add installs p.
func (f *Firewall) Add(p firewall.Pinhole) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Fail != nil {
		return f.Fail
	}
	f.holes[p.Key()] = p
	return nil
}

// Remove deletes the pinhole with key k; absent is fine.
func (f *Firewall) Remove(k firewall.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Fail != nil {
		return f.Fail
	}
	delete(f.holes, k)
	return nil
}

// Apply removes remove's pinholes and installs add's, as one call.
func (f *Firewall) Apply(add []firewall.Pinhole, remove []firewall.Key) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Fail != nil {
		return f.Fail
	}
	for _, k := range remove {
		delete(f.holes, k)
	}
	for _, p := range add {
		f.holes[p.Key()] = p
	}
	return nil
}

// Sync replaces every pinhole with ps.
func (f *Firewall) Sync(ps []firewall.Pinhole) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.Calls++
	if f.Fail != nil {
		return f.Fail
	}
	f.holes = map[firewall.Key]firewall.Pinhole{}
	for _, p := range ps {
		f.holes[p.Key()] = p
	}
	return nil
}

// Get returns the pinhole with key k.
func (f *Firewall) Get(k firewall.Key) (firewall.Pinhole, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, ok := f.holes[k]
	return p, ok
}

// Len returns the number of pinholes.
func (f *Firewall) Len() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.holes)
}

// Store keeps leases in maps and counts writes.
type Store struct {
	mu      sync.Mutex
	leases  map[lease.Key]lease.Lease
	Writes  int // Put, Delete and PutExpiries calls that succeeded
	Fail    error
	Expired int // expiry updates written by PutExpiries
}

var _ lease.Store = (*Store)(nil)

// NewStore returns an empty fake store.
func NewStore() *Store { return &Store{leases: map[lease.Key]lease.Lease{}} }

// ErrInjected is a convenient failure to inject.
var ErrInjected = errors.New("injected failure")

// Put stores l.
func (s *Store) Put(l lease.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	s.leases[l.Key()] = l
	s.Writes++
	return nil
}

// Delete removes the lease with key k.
func (s *Store) Delete(k lease.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	delete(s.leases, k)
	s.Writes++
	return nil
}

// Apply stores puts and deletes dels, as one write.
func (s *Store) Apply(puts []lease.Lease, dels []lease.Key) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	for _, k := range dels {
		delete(s.leases, k)
	}
	for _, l := range puts {
		s.leases[l.Key()] = l
	}
	s.Writes++
	return nil
}

// PutExpiries updates stored expiries.
func (s *Store) PutExpiries(ls []lease.Lease) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.Fail != nil {
		return s.Fail
	}
	for _, l := range ls {
		if old, ok := s.leases[l.Key()]; ok {
			old.Expires = l.Expires
			s.leases[l.Key()] = old
			s.Expired++
		}
	}
	s.Writes++
	return nil
}

// Get returns the stored lease with key k.
func (s *Store) Get(k lease.Key) (lease.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	l, ok := s.leases[k]
	return l, ok
}

// All returns every stored lease.
func (s *Store) All() []lease.Lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return slices.Collect(maps.Values(s.leases))
}
