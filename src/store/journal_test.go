package store

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/testenv"
	"github.com/dpf-router/dpf/src/lease"
)

// crashCopy copies the database and its journal, as they are on disk now,
// into a new directory, as a crash at this instant would leave them (every
// acknowledged write has been synced), and returns the copy's path.
func crashCopy(t *testing.T, path string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "leases.db")
	for _, suffix := range []string{"", "-journal"} {
		b, err := os.ReadFile(path + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// rawLeases returns the ports stored in the database file at path itself,
// not counting what its journal holds.
func rawLeases(t *testing.T, path string) map[uint16]bool {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	got := map[uint16]bool{}
	db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			got[binary.BigEndian.Uint16(k[1:])] = true
			return nil
		})
	})
	return got
}

// loadPorts opens the database at path (replaying its journal) and
// returns its leases by port.
func loadPorts(t *testing.T, path string) map[uint16]lease.Lease {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	defer s.Close()
	ls, bad, err := s.Load()
	if err != nil || len(bad) > 0 {
		t.Fatalf("Load: %v %v", bad, err)
	}
	got := map[uint16]lease.Lease{}
	for _, l := range ls {
		got[l.ExternalPort] = l
	}
	return got
}

// TestJournalReplay checks that changes acknowledged but only in the
// journal (not yet in the database file) are there after a crash, in
// order: puts, changes and deletes, and a staged epoch that rode along.
func TestJournalReplay(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Apply([]lease.Lease{sample(9000), sample(9001), sample(9002)}, nil); err != nil {
		t.Fatal(err)
	}
	changed := sample(9001)
	changed.Description = "changed"
	gone := sample(9000)
	if err := s.Apply([]lease.Lease{changed}, []lease.Key{gone.Key()}); err != nil {
		t.Fatal(err)
	}
	s.StageEpoch(777, time.Unix(1_800_000_000, 0))
	if err := s.Put(sample(9003)); err != nil {
		t.Fatal(err)
	}
	if s.Staged() {
		t.Fatal("the staged epoch did not ride on the journal record")
	}
	crashed := crashCopy(t, path)
	if raw := rawLeases(t, crashed); len(raw) != 0 {
		t.Fatalf("the database file itself has %v: the test does not exercise the journal", raw)
	}
	got := loadPorts(t, crashed)
	if len(got) != 3 || got[9001].Description != "changed" || got[9002].ExternalPort == 0 || got[9003].ExternalPort == 0 {
		t.Fatalf("after the crash: %v", got)
	}
	s2, err := Open(crashed)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if e, _, ok, err := s2.LoadEpoch(); !ok || err != nil || e != 777 {
		t.Fatalf("epoch after the crash: %d %v %v; want 777", e, ok, err)
	}
}

// TestJournalTornRecord checks that a record cut short by a crash (never
// acknowledged) is dropped, and the records before it are kept.
func TestJournalTornRecord(t *testing.T) {
	s, path := openTemp(t)
	for p := uint16(9000); p < 9005; p++ {
		if err := s.Put(sample(p)); err != nil {
			t.Fatal(err)
		}
	}
	off := s.j.off
	if err := s.Put(sample(9005)); err != nil {
		t.Fatal(err)
	}
	end := s.j.off
	for _, cut := range []int64{1, journalHeader, (end - off) / 2, end - off - 1} {
		crashed := crashCopy(t, path)
		f, err := os.OpenFile(crashed+"-journal", os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		// What a crash mid-write leaves: the record's start, then
		// what was there before (zeros).
		if _, err := f.WriteAt(make([]byte, end-off-cut), off+cut); err != nil {
			t.Fatal(err)
		}
		f.Close()
		got := loadPorts(t, crashed)
		if len(got) != 5 || got[9005].ExternalPort != 0 {
			t.Fatalf("record cut after %d bytes: leases %v; want 9000-9004", cut, got)
		}
	}
}

// TestJournalStaleRecords checks that records already in the database are
// not applied again after a crash: neither over a newer expiry written by
// a checkpoint, nor records of an earlier round that a shorter new record
// did not overwrite.
func TestJournalStaleRecords(t *testing.T) {
	s, path := openTemp(t)
	var ls []lease.Lease
	for p := uint16(9000); p < 9020; p++ {
		ls = append(ls, sample(p))
	}
	if err := s.Apply(ls, nil); err != nil { // one long record
		t.Fatal(err)
	}
	for p := uint16(9020); p < 9030; p++ { // then short ones
		if err := s.Put(sample(p)); err != nil {
			t.Fatal(err)
		}
	}
	// A checkpoint renewing 9005: written to the database directly,
	// after the journal (which it applies first).
	renewed := sample(9005)
	renewed.Expires = renewed.Expires.Add(time.Hour)
	if err := s.PutExpiries([]lease.Lease{renewed}); err != nil {
		t.Fatal(err)
	}
	if s.j.off != 0 {
		t.Fatalf("journal holds %d bytes after a checkpoint", s.j.off)
	}
	// A crash now finds the old round whole in the journal.
	if got := loadPorts(t, crashCopy(t, path)); len(got) != 30 || !got[9005].Expires.Equal(renewed.Expires) {
		t.Fatalf("crash after the checkpoint: %d leases, 9005 expires %v; want 30 and the checkpoint's %v (a stale record was replayed)",
			len(got), got[9005].Expires, renewed.Expires)
	}
	// A new round: one short record over the long one.
	last := sample(9029)
	if err := s.Delete(last.Key()); err != nil {
		t.Fatal(err)
	}
	got := loadPorts(t, crashCopy(t, path))
	if len(got) != 29 || got[9029].ExternalPort != 0 {
		t.Fatalf("after the crash: %d leases (9029 present: %v); want 29 without 9029", len(got), got[9029].ExternalPort != 0)
	}
	if !got[9005].Expires.Equal(renewed.Expires) {
		t.Fatalf("9005 expires %v, want the checkpoint's %v: a stale record was replayed", got[9005].Expires, renewed.Expires)
	}
}

// TestJournalFull checks that when a record does not fit, the journal is
// written into the database first and starts again, losing nothing; and
// that a batch larger than the whole journal goes straight to the
// database.
func TestJournalFull(t *testing.T) {
	s, path := openTemp(t)
	var all []lease.Lease
	for i := range 1500 {
		l := sample(uint16(10000 + i))
		all = append(all, l)
		if err := s.Put(l); err != nil {
			t.Fatal(err)
		}
	}
	if s.marked == 0 {
		t.Fatal("1,500 records never filled the journal")
	}
	if got := loadPorts(t, crashCopy(t, path)); len(got) != len(all) {
		t.Fatalf("%d of %d leases after the crash", len(got), len(all))
	}
	var big []lease.Lease
	for i := range 1500 {
		big = append(big, sample(uint16(20000+i)))
	}
	if err := s.Apply(big, nil); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, path)
	if raw := rawLeases(t, crashed); len(raw) != 3000 {
		t.Fatalf("the database file has %d leases after a batch larger than the journal; want 3,000", len(raw))
	}
	if got := loadPorts(t, crashed); len(got) != 3000 {
		t.Fatalf("%d leases after the crash, want 3,000", len(got))
	}
}

// TestJournalOfAnotherDatabase checks that a journal left beside a new
// database (the old one deleted) is not replayed into it.
func TestJournalOfAnotherDatabase(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	crashed := crashCopy(t, path)
	if err := os.Remove(crashed); err != nil {
		t.Fatal(err)
	}
	if got := loadPorts(t, crashed); len(got) != 0 {
		t.Fatalf("a new database got %v from the old one's journal", got)
	}
}

// TestJournalWriteFails checks that a change whose journal record cannot
// be written is stored in the database instead, and that the journal
// works again afterwards.
func TestJournalWriteFails(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	good := s.j.f
	ro, err := os.Open(path + "-journal") // writes fail with EBADF
	if err != nil {
		t.Fatal(err)
	}
	s.j.f = ro
	if err := s.Put(sample(9001)); err != nil {
		t.Fatalf("Put with a failing journal: %v", err)
	}
	if raw := rawLeases(t, crashCopy(t, path)); !raw[9000] || !raw[9001] {
		t.Fatalf("the database file has %v; want 9000 and 9001 written directly", raw)
	}
	s.j.f = good
	ro.Close()
	if err := s.Put(sample(9002)); err != nil {
		t.Fatal(err)
	}
	if got := loadPorts(t, crashCopy(t, path)); len(got) != 3 {
		t.Fatalf("after the crash: %v", got)
	}
}

// TestJournalCheckpointWhenIdle checks that the journal is written into
// the database soon after the last record.
func TestJournalCheckpointWhenIdle(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * journalIdle)
	for time.Now().Before(deadline) {
		if rawLeases(t, crashCopy(t, path))[9000] {
			return
		}
		time.Sleep(journalIdle / 10)
	}
	t.Fatalf("lease not in the database file %v after the last record", 10*journalIdle)
}

// TestJournalIdleCheckpointFailureReported checks that a failed idle
// checkpoint reaches the error handler, and that the records it could not
// move are still moved by the next checkpoint.
func TestJournalIdleCheckpointFailureReported(t *testing.T) {
	s, path := openTemp(t)
	errs := make(chan error, 16)
	s.SetErrorHandler(func(err error) {
		select {
		case errs <- err:
		default:
		}
	})
	boom := errors.New("disk on fire")
	s.jmu.Lock()
	s.failCommit = boom
	s.jmu.Unlock()
	if err := s.Put(sample(9001)); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-errs:
		if !errors.Is(err, boom) {
			t.Fatalf("handler got %v, want %v", err, boom)
		}
	case <-time.After(10 * journalIdle):
		t.Fatalf("no error reported %v after the last record", 10*journalIdle)
	}
	s.jmu.Lock()
	s.failCommit = nil
	s.jmu.Unlock()
	if err := s.checkpoint(); err != nil {
		t.Fatal(err)
	}
	if !rawLeases(t, crashCopy(t, path))[9001] {
		t.Fatal("lease not in the database after the failed idle checkpoint and a good one")
	}
}

// FuzzJournalScan reads arbitrary bytes as a journal: it must not panic,
// and every record it accepts must encode back to the same bytes.
func FuzzJournalScan(f *testing.F) {
	ops := []jop{
		{kind: opDelete, key: []byte{6, 0, 80}},
		{kind: opPut, key: []byte{17, 1, 0}, expiry: make([]byte, 8), value: []byte(`{"proto":17}`)},
		{kind: opMeta, key: []byte("epoch"), value: make([]byte, 12)},
	}
	const id = 0x5eed
	f.Add(appendRecord(appendRecord(nil, id, 1, ops), id, 2, ops[:1]))
	f.Add(appendRecord(nil, id, 7, nil))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, b []byte) {
		var recs [][]byte
		var off int64
		end, _, err := scanJournal(bytes.NewReader(b), int64(len(b)), id, func(seq uint64, ops []jop) error {
			rec := appendRecord(nil, id, seq, ops)
			recs = append(recs, rec)
			if !bytes.Equal(rec, b[off:off+int64(len(rec))]) {
				t.Fatalf("record %d at %d re-encodes differently", seq, off)
			}
			off += int64(len(rec))
			return nil
		})
		if err != nil && err != io.ErrUnexpectedEOF {
			t.Fatal(err)
		}
		if end != off {
			t.Fatalf("end %d, records up to %d", end, off)
		}
	})
}

// TestJournalFailedWriteNotReplayed checks that a change whose record
// reached the disk but whose sync and fallback transaction both failed (so
// Apply returned an error) is not applied after a crash once anything
// later was stored: neither after a direct write nor after a later record.
func TestJournalFailedWriteNotReplayed(t *testing.T) {
	for _, later := range []string{"direct write", "record"} {
		t.Run(later, func(t *testing.T) {
			s, path := openTemp(t)
			if err := s.Put(sample(9000)); err != nil {
				t.Fatal(err)
			}
			datasyncFn = func(*os.File) error { return errors.New("injected sync failure") }
			s.failCommit = errors.New("injected commit failure")
			err := s.Put(sample(9001))
			datasyncFn, s.failCommit = datasync, nil
			if err == nil {
				t.Fatal("Put succeeded with both its record and its transaction failing")
			}
			if later == "direct write" {
				err = s.SaveExternal(netip.MustParseAddr("203.0.113.1"))
			} else {
				err = s.Put(sample(9002))
			}
			if err != nil {
				t.Fatal(err)
			}
			got := loadPorts(t, crashCopy(t, path))
			if _, ok := got[9001]; ok {
				t.Fatal("the failed change was applied after a crash")
			}
			if _, ok := got[9000]; !ok {
				t.Fatal("lease 9000 lost")
			}
			if _, ok := got[9002]; !ok && later == "record" {
				t.Fatal("lease 9002, stored after the failure, lost")
			}
		})
	}
}

// TestJournalGapNotApplied checks that a journal whose records do not
// follow the database's last applied one (the database restored from an
// older copy) is not applied, and that the store says so and works.
func TestJournalGapNotApplied(t *testing.T) {
	s, path := openTemp(t)
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil { // checkpoint: 9000 in the database
		t.Fatal(err)
	}
	old := crashCopy(t, path)
	if err := s.Put(sample(9001)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Load(); err != nil { // the database moves on
		t.Fatal(err)
	}
	if err := s.Put(sample(9002)); err != nil { // in the journal only
		t.Fatal(err)
	}
	cur := crashCopy(t, path)
	b, err := os.ReadFile(cur + "-journal")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(old+"-journal", b, 0o600); err != nil { // old database, new journal
		t.Fatal(err)
	}
	s2, err := Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if s2.JournalProblem() == nil {
		t.Error("no problem reported for a journal that does not follow the database")
	}
	ls, _, err := s2.Load()
	if err != nil || len(ls) != 1 || ls[0].ExternalPort != 9000 {
		t.Fatalf("leases %v (%v); want the old database's 9000 only", ls, err)
	}
	if err := s2.Put(sample(9003)); err != nil {
		t.Fatal(err)
	}
	if got := loadPorts(t, crashCopy(t, old)); len(got) != 2 {
		t.Fatalf("after a new record: %v", got)
	}
}

// TestOpenWithoutJournalSpace checks that a file system with no room for
// the journal leaves the store working without one, not failing to open.
func TestOpenWithoutJournalSpace(t *testing.T) {
	testenv.RequireRoot(t)
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=192k"); err != nil {
		t.Fatalf("mounting a small tmpfs: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, 0) })
	path := filepath.Join(dir, "leases.db")
	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open with no room for the journal: %v", err)
	}
	if s.JournalProblem() == nil {
		t.Error("no problem reported")
	}
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	if raw := rawLeases(t, crashCopy(t, path)); !raw[9000] {
		t.Fatal("without a journal, Put did not write the database")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestJournalRecordSizes checks that the sizes reported for single puts and
// deletes are those of the records the store wrote, in order, and that a
// record of several operations is left out.
func TestJournalRecordSizes(t *testing.T) {
	s, path := openTemp(t)
	var puts, dels []int
	for p := uint16(9000); p < 9004; p++ {
		off := s.j.off
		if err := s.Put(sample(p)); err != nil {
			t.Fatal(err)
		}
		puts = append(puts, int(s.j.off-off))
		off = s.j.off
		l := sample(p)
		if err := s.Delete(l.Key()); err != nil {
			t.Fatal(err)
		}
		dels = append(dels, int(s.j.off-off))
	}
	if err := s.Apply([]lease.Lease{sample(9100), sample(9101)}, nil); err != nil {
		t.Fatal(err)
	}
	gotPuts, gotDels, err := JournalRecordSizes(path + "-journal")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotPuts, puts) || !slices.Equal(gotDels, dels) {
		t.Fatalf("sizes: puts %v deletes %v; the store wrote puts %v deletes %v", gotPuts, gotDels, puts, dels)
	}
	if puts[0] <= dels[0] {
		t.Fatalf("a put record (%d bytes) is not larger than a delete (%d)", puts[0], dels[0])
	}
	if _, _, err := JournalRecordSizes(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Fatal("no error for a missing journal")
	}
}
