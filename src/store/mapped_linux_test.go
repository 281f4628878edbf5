package store

import (
	"bufio"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dpf-router/dpf/src/lease"
)

// mappedRSS returns the resident kilobytes of this process's mappings of
// path, from /proc/self/smaps.
func mappedRSS(t *testing.T, path string) int {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	kb, in := 0, false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if fs := strings.Fields(line); len(fs) >= 5 && strings.Contains(fs[0], "-") {
			in = len(fs) >= 6 && fs[5] == path
			continue
		}
		if in && strings.HasPrefix(line, "Rss:") {
			n, _ := strconv.Atoi(strings.Fields(line)[1])
			kb += n
		}
	}
	return kb
}

// TestLoadLeavesNoPagesResident checks that after Load (which reads every
// page, as opening does) the database file's pages are no longer in the
// process's resident set, and that reading them again still works.
func TestLoadLeavesNoPagesResident(t *testing.T) {
	s, path := openTemp(t)
	const n = 3000
	now := time.Unix(1_800_000_000, 0)
	var ls []lease.Lease
	for i := range n {
		ls = append(ls, benchLease(i, now))
	}
	if err := s.Apply(ls, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.checkpoint(); err != nil { // from the journal into the database
		t.Fatal(err)
	}
	// Touch every page without dropping them: the mapping is resident.
	if err := s.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error { return nil })
	}); err != nil {
		t.Fatal(err)
	}
	before := mappedRSS(t, path)
	if before < 256 {
		t.Fatalf("only %d kB of %s resident after reading it all; the test cannot see a drop", before, path)
	}
	got, bad, err := s.Load()
	if err != nil || len(bad) > 0 || len(got) != n {
		t.Fatalf("Load: %d leases, %v, %v", len(got), bad, err)
	}
	if after := mappedRSS(t, path); after > before/8 {
		t.Fatalf("%d kB of the database resident after Load (%d before)", after, before)
	}
	again, _, err := s.Load()
	if err != nil || len(again) != n {
		t.Fatalf("Load after the drop: %d leases, %v", len(again), err)
	}
}
