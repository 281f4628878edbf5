package store

import (
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestLeaseAuthStored: a lease's key name survives a reopen, and a record
// written before the field existed reads as unauthenticated.
func TestLeaseAuthStored(t *testing.T) {
	s, path := openTemp(t)
	keyed := sample(443)
	keyed.Auth = "alice"
	if err := s.Put(keyed); err != nil {
		t.Fatal(err)
	}
	// An old record: what toRecord wrote before "auth" existed.
	old := []byte(`{"proto":6,"ext_port":8080,"int_addr":"198.51.100.10","int_port":8080,"client":"198.51.100.10",` +
		`"origin":"natpmp","lifetime":7200,"created":1800000000,"renewed":1800000000,"expires":1800007200000}`)
	if err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).Put([]byte{6, 0x1f, 0x90}, old)
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ls, bad, err := s2.Load()
	if err != nil || len(bad) != 0 || len(ls) != 2 {
		t.Fatalf("Load = %d leases, bad %v, %v", len(ls), bad, err)
	}
	byPort := map[uint16]string{}
	for _, l := range ls {
		byPort[l.ExternalPort] = l.Auth
	}
	if byPort[443] != "alice" || byPort[8080] != "" {
		t.Fatalf("keys after reopen: %v", byPort)
	}
}

func TestAuthSeqs(t *testing.T) {
	s, path := openTemp(t)
	if got, err := s.LoadAuthSeqs(); err != nil || len(got) != 0 {
		t.Fatalf("fresh store: %v, %v", got, err)
	}
	want := map[[8]byte]uint64{
		{1, 2, 3, 4, 5, 6, 7, 8}:    1_800_000_000_123_456_789,
		{0xff, 0, 0, 0, 0, 0, 0, 1}: 1<<64 - 1,
	}
	if err := s.SaveAuthSeqs(want); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	got, err := s2.LoadAuthSeqs()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("LoadAuthSeqs = %v, %v; want %v", got, err, want)
	}
	// Saving replaces.
	if err := s2.SaveAuthSeqs(map[[8]byte]uint64{{9}: 5}); err != nil {
		t.Fatal(err)
	}
	if got, _ := s2.LoadAuthSeqs(); len(got) != 1 || got[[8]byte{9}] != 5 {
		t.Fatalf("after replacing: %v", got)
	}
}
