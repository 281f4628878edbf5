package store

import (
	"net/netip"
	"testing"
)

// The external address survives a reopen; none saved reads as the zero
// Addr, and saving an invalid address keeps the one saved before.
func TestExternalAddress(t *testing.T) {
	s, path := openTemp(t)
	if a, err := s.LoadExternal(); err != nil || a.IsValid() {
		t.Fatalf("fresh store: %v, %v; want no address", a, err)
	}
	want := netip.MustParseAddr("203.0.113.7")
	if err := s.SaveExternal(want); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveExternal(netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if a, err := s2.LoadExternal(); err != nil || a != want {
		t.Fatalf("after reopening: %v, %v; want %v", a, err, want)
	}
}
