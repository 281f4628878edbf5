package store

import (
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dpf-router/dpf/src/lease"
)

// TestApply checks that one Apply stores several leases and deletes others,
// and that it all survives a reopen.
func TestApply(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Apply([]lease.Lease{sample(9000), sample(9001), sample(9002)}, nil); err != nil {
		t.Fatal(err)
	}
	changed := sample(9001)
	changed.Description = "changed"
	gone, never := sample(9000), sample(9999)
	if err := s.Apply([]lease.Lease{changed, sample(9003)}, []lease.Key{gone.Key(), never.Key()}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ls, bad, err := s2.Load()
	if err != nil || len(bad) > 0 {
		t.Fatalf("Load: %v %v", bad, err)
	}
	got := map[uint16]string{}
	for _, l := range ls {
		got[l.ExternalPort] = l.Description
	}
	want := map[uint16]string{9001: "changed", 9002: "web server", 9003: "web server"}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for p, d := range want {
		if got[p] != d {
			t.Fatalf("stored %v, want %v", got, want)
		}
	}
}

// TestStagedEpoch checks that a staged epoch costs no write of its own: it
// is stored by the next write that happens anyway, LoadEpoch sees the old
// value until then, and an empty checkpoint writes it only when staged.
func TestStagedEpoch(t *testing.T) {
	s, _ := openTemp(t)
	at := time.Unix(1_800_000_000, 0)
	if err := s.SaveEpoch(100, at); err != nil {
		t.Fatal(err)
	}
	epoch := func() uint32 {
		t.Helper()
		e, _, ok, err := s.LoadEpoch()
		if !ok || err != nil {
			t.Fatalf("LoadEpoch: %v %v", ok, err)
		}
		return e
	}
	writes := func() int64 { st := s.db.Stats(); return st.TxStats.GetWrite() }

	s.StageEpoch(200, at.Add(100*time.Second))
	if !s.Staged() || epoch() != 100 {
		t.Fatalf("staged %v, stored epoch %d; want staged and 100", s.Staged(), epoch())
	}
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	if s.Staged() || epoch() != 200 {
		t.Fatalf("after a write: staged %v, epoch %d; want 200 stored", s.Staged(), epoch())
	}

	w := writes()
	if err := s.PutExpiries(nil); err != nil || writes() != w {
		t.Fatalf("an empty checkpoint with nothing staged wrote (%v)", err)
	}
	s.StageEpoch(300, at.Add(200*time.Second))
	if err := s.PutExpiries(nil); err != nil || writes() == w || epoch() != 300 {
		t.Fatalf("an empty checkpoint did not write the staged epoch (%v, epoch %d)", err, epoch())
	}

	// SaveEpoch supersedes a staged value.
	s.StageEpoch(400, at.Add(300*time.Second))
	if err := s.SaveEpoch(500, at.Add(400*time.Second)); err != nil {
		t.Fatal(err)
	}
	if s.Staged() || epoch() != 500 {
		t.Fatalf("after SaveEpoch: staged %v, epoch %d", s.Staged(), epoch())
	}
}

// TestCheckpointCompactsExpiries checks that a checkpoint renewing most
// leases rewrites the expiry bucket with full pages (leases created in
// random order leave them half full), keeps every expiry right, and that a
// checkpoint renewing a few changes only those.
func TestCheckpointCompactsExpiries(t *testing.T) {
	s, _ := openTemp(t)
	const n = 1000
	base := time.Unix(1_800_000_000, 0)
	ls := make([]lease.Lease, n)
	for i := range n {
		p := i
		ls[i] = sample(uint16(10000 + p))
		ls[i].Expires = base.Add(time.Duration(p) * time.Second)
		if err := s.Put(ls[i]); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.checkpoint(); err != nil { // from the journal into the database
		t.Fatal(err)
	}
	stats := func() bolt.BucketStats {
		var st bolt.BucketStats
		s.db.View(func(tx *bolt.Tx) error { st = tx.Bucket(bucketExpiry).Stats(); return nil })
		return st
	}
	before := stats()
	for i := range ls {
		ls[i].Expires = ls[i].Expires.Add(time.Hour)
	}
	if err := s.PutExpiries(ls); err != nil {
		t.Fatal(err)
	}
	after := stats()
	if after.KeyN != n || after.LeafPageN*3 > before.LeafPageN*2 {
		t.Fatalf("expiry bucket: %d keys in %d leaf pages (before the checkpoint %d pages); want %d keys, a third fewer pages",
			after.KeyN, after.LeafPageN, before.LeafPageN, n)
	}
	few := []lease.Lease{ls[3], ls[500]}
	few[0].Expires = few[0].Expires.Add(time.Minute)
	few[1].Expires = few[1].Expires.Add(time.Minute)
	if err := s.PutExpiries(few); err != nil {
		t.Fatal(err)
	}
	want := map[uint16]time.Time{}
	for _, l := range ls {
		want[l.ExternalPort] = l.Expires
	}
	for _, l := range few {
		want[l.ExternalPort] = l.Expires
	}
	got, bad, err := s.Load()
	if err != nil || len(bad) > 0 || len(got) != n {
		t.Fatalf("Load: %d leases, %v, %v", len(got), bad, err)
	}
	for _, l := range got {
		if !l.Expires.Equal(want[l.ExternalPort]) {
			t.Fatalf("port %d expires %v, want %v", l.ExternalPort, l.Expires, want[l.ExternalPort])
		}
	}
}
