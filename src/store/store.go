// Package store keeps dpfd's leases in a bbolt database so that they survive
// restarts, crashes and reboots.
//
// Layout (schema version 1):
//
//	meta    "schema"   -> uint32 big endian schema version
//	        "epoch"    -> uint32 PCP epoch seconds, then int64 unix seconds when written
//	        "auth_seq" -> JSON object: hex key id -> highest accepted AUTH
//	                      sequence number (see SaveAuthSeqs)
//	        "external" -> the external address when last seen (netip.Addr binary)
//	        "journal"  -> uint64 big endian: the last journal record applied
//	        "journal_id" -> 8 random bytes made with the database (journal.go)
//	leases  key(proto, ext port) -> JSON record of the lease
//	expiry  key(proto, ext port) -> int64 big endian unix milliseconds
//
// Creating, changing or deleting a lease is durable before Apply returns,
// so a lease whose success was reported is on disk: it is one record in
// the journal (journal.go, the file "<database>-journal"), which costs one
// write and one fdatasync, and the journal is moved into the database in
// one transaction when it is full, 1 s after the last change, before any
// other write or read, and on Close. Apply makes the changes of a burst
// of requests one record, so that they share the fdatasync. A renewal
// only moves the expiry; those are written
// together by PutExpiries, once per checkpoint interval, in the small expiry
// bucket, so that a router's flash is not written on every renewal. A
// checkpoint that renews most leases rewrites that bucket with full pages,
// and the periodic epoch save rides on it (StageEpoch): a checkpoint of
// 1,000 renewed leases writes 10 pages of 4 KiB, where it took 16 and the
// epoch save 5 more.
//
// Records written before a field existed read with the field's zero value
// (a lease without "auth" is unauthenticated), so adding fields needs no new
// schema version.
package store

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

// SchemaVersion is the layout this package reads and writes.
const SchemaVersion = 1

var (
	bucketMeta   = []byte("meta")
	bucketLeases = []byte("leases")
	bucketExpiry = []byte("expiry")
	keySchema    = []byte("schema")
	keyEpoch     = []byte("epoch")
	keyExternal  = []byte("external")
	keyAuthSeq   = []byte("auth_seq")
)

// ErrNewerSchema is returned by Open for a database written by a newer dpfd.
var ErrNewerSchema = errors.New("lease database has a newer schema than this dpfd supports")

// openTimeout bounds the wait for the file lock another dpfd may hold.
const openTimeout = 2 * time.Second

// Store is an open lease database. It is safe for concurrent use.
type Store struct {
	db *bolt.DB

	// stagedMu guards staged, the meta values (by key) that the next
	// write transaction stores too (see StageEpoch), and versions, which
	// count the values staged or saved for each key, so that a value a
	// failed transaction gives back is staged again only if nothing newer
	// came meanwhile.
	stagedMu sync.Mutex
	staged   map[string]stagedValue
	versions map[string]uint64

	// writes counts write transactions, for dropMapped.
	writes atomic.Uint64

	// jmu serializes writers: it guards j, marked and idle, and is held
	// across every write transaction, so that a checkpoint sees every
	// record written before it (see journal.go).
	jmu    sync.Mutex
	j      *journal // nil without a journal (every change a transaction) and once closed
	closed bool
	marked uint64 // the seq stored in meta "journal"
	// journalID is the CRC-32C of the database id (meta "journal_id"),
	// read or made by init.
	journalID uint32
	idle      *time.Timer
	// journalErr says why Open left the journal off, or what it could
	// not replay (JournalProblem).
	journalErr error
	// failCommit, when set (by tests), makes write transactions fail.
	failCommit error
	// onError receives the errors of work no caller waits for (the idle
	// checkpoint); see SetErrorHandler.
	onError atomic.Pointer[func(error)]
}

// journalIdle is how long after the last record the journal is written
// into the database, if nothing did it before: so that it is usually empty
// and a start-up replays little.
const journalIdle = time.Second

// dropEvery is how many write transactions go by between two calls of
// dropMapped: each touches a few pages, so the resident part of the
// mapping grows slowly; the call itself is one system call.
const dropEvery = 256

// dropMapped takes the database file's pages out of the process's resident
// set (see unmapPages). bbolt reads the file through a shared read-only
// mapping, and every page it ever read stays mapped and counts in dpfd's
// RSS: after a start-up, the whole file, as opening it rebuilds the
// freelist from every page and Load reads every lease (4 MB at 10,000
// leases). The pages stay in the page cache, which the kernel can reclaim.
// It runs in a read transaction, during which bbolt does not remap.
func (s *Store) dropMapped() {
	_ = s.db.View(func(tx *bolt.Tx) error {
		return unmapPages(s.db.Info().Data, tx.Size())
	})
}

// stagedValue is a staged meta value and its version (Store.versions).
type stagedValue struct {
	v       []byte
	version uint64
}

// update runs fn in a write transaction that also stores the staged meta
// values. They are taken inside the transaction, under bbolt's writer
// lock, so that staged and saved values reach the disk in the order they
// were given. If the transaction fails they are staged again, unless a
// newer value was staged or saved meanwhile.
//
// The transaction first applies what the journal holds (a checkpoint).
func (s *Store) update(fn func(tx *bolt.Tx) error) error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	return s.updateLocked(fn)
}

// updateLocked is update for a caller holding jmu; fn may be nil (a
// checkpoint only).
func (s *Store) updateLocked(fn func(tx *bolt.Tx) error) error {
	var st map[string]stagedValue
	var mark uint64
	err := s.db.Update(func(tx *bolt.Tx) error {
		st = nil
		var err error
		if mark, err = s.drain(tx); err != nil {
			return err
		}
		if fn != nil {
			if err := fn(tx); err != nil {
				return err
			}
		}
		st = s.takeStaged()
		meta := tx.Bucket(bucketMeta)
		for k, sv := range st {
			if err := meta.Put([]byte(k), sv.v); err != nil {
				return err
			}
		}
		return s.failCommit
	})
	// A checkpoint reads and writes many pages at once: drop them after
	// it, as after every dropEvery writes otherwise.
	if s.writes.Add(1)%dropEvery == 0 || mark > s.marked {
		s.dropMapped()
	}
	if err != nil {
		s.restage(st)
		return err
	}
	s.marked = mark
	if s.j != nil {
		s.j.off, s.j.spent = 0, false
	}
	return nil
}

// drain applies the journal's pending records in tx and stores the seq
// of the last record written (meta "journal"), if that moved; it returns
// that seq.
func (s *Store) drain(tx *bolt.Tx) (uint64, error) {
	if !s.pendingLocked() {
		return s.marked, nil
	}
	j := s.j
	if j.off > 0 {
		end, last, err := scanJournal(io.NewSectionReader(j.f, 0, j.off), j.off, j.id, func(seq uint64, ops []jop) error {
			if seq <= s.marked {
				return nil
			}
			return applyOps(tx, ops)
		})
		if err != nil {
			return 0, fmt.Errorf("reading the journal back: %w", err)
		}
		if end != j.off {
			return 0, fmt.Errorf("reading the journal back: %d of %d bytes readable (up to record %d of %d)", end, j.off, last, j.next-1)
		}
	}
	mark := j.next - 1
	return mark, tx.Bucket(bucketMeta).Put(keyJournal, binary.BigEndian.AppendUint64(nil, mark))
}

// applyOps applies one journal record's operations in tx.
func applyOps(tx *bolt.Tx, ops []jop) error {
	leases, exp, meta := tx.Bucket(bucketLeases), tx.Bucket(bucketExpiry), tx.Bucket(bucketMeta)
	for _, op := range ops {
		var err error
		switch op.kind {
		case opDelete:
			if err = leases.Delete(op.key); err == nil {
				err = exp.Delete(op.key)
			}
		case opPut:
			if err = leases.Put(op.key, op.value); err == nil {
				err = exp.Put(op.key, op.expiry)
			}
		case opMeta:
			err = meta.Put(op.key, op.value)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// takeStaged takes the staged meta values.
func (s *Store) takeStaged() map[string]stagedValue {
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	st := s.staged
	s.staged = nil
	return st
}

// restage stages again values that takeStaged took and that a failed
// write did not store, unless something newer was staged or saved
// meanwhile.
func (s *Store) restage(st map[string]stagedValue) {
	if len(st) == 0 {
		return
	}
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	for k, sv := range st {
		if s.versions[k] == sv.version {
			if s.staged == nil {
				s.staged = map[string]stagedValue{}
			}
			s.staged[k] = sv
		}
	}
}

// pendingLocked reports whether the journal has records (or a spent
// seq) that the database has not recorded as applied. Callers hold jmu.
func (s *Store) pendingLocked() bool { return s.j != nil && s.j.next-1 > s.marked }

// checkpoint writes what the journal holds into the database.
func (s *Store) checkpoint() error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if !s.pendingLocked() {
		return nil
	}
	return s.updateLocked(nil)
}

// idleCheckpoint is the idle timer's function. A failure loses nothing
// (the records stay in the journal, and the next write or read tries the
// checkpoint again) but is reported: it is usually a disk that is full or
// failing.
func (s *Store) idleCheckpoint() {
	if err := s.checkpoint(); err != nil {
		if f := s.onError.Load(); f != nil {
			(*f)(fmt.Errorf("moving the lease journal into the database: %w", err))
		}
	}
}

// SetErrorHandler makes f receive the errors of the store's background
// work, which no caller sees otherwise: the checkpoint it makes 1 s after
// the last change. f runs on the store's timer goroutine, with no lock of
// the store held, and must not block for long. nil removes it.
func (s *Store) SetErrorHandler(f func(error)) {
	if f == nil {
		s.onError.Store(nil)
		return
	}
	s.onError.Store(&f)
}

// nextVersion returns the next version of key k. Callers hold stagedMu.
func (s *Store) nextVersion(k string) uint64 {
	if s.versions == nil {
		s.versions = map[string]uint64{}
	}
	s.versions[k]++
	return s.versions[k]
}

var _ lease.Store = (*Store)(nil)

// Open opens or creates the database at path (and its directory).
func Open(path string) (*Store, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, fmt.Errorf("creating database directory: %w", err)
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout: openTimeout,
		// The freelist is rebuilt when the file is opened instead of
		// being written on every commit: fewer flash writes.
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("opening %s: locked by another process (is dpfd already running?)", path)
		}
		return nil, fmt.Errorf("opening %s: %w", path, err)
	}
	s := &Store{db: db}
	if err := s.init(); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := s.recover(path + "-journal"); err != nil {
		db.Close()
		return nil, fmt.Errorf("%s-journal: %w", path, err)
	}
	return s, nil
}

// recover opens the journal and applies the records that a crash left in
// it. Only the database failing fails it: a journal that cannot be made
// or read leaves the store without one (each change a transaction, as
// before the journal), which JournalProblem reports.
func (s *Store) recover(path string) error {
	j, err := openJournal(path)
	if err != nil {
		s.journalErr = fmt.Errorf("lease journal off, every change is a database transaction: %w", err)
		return nil
	}
	j.id = s.journalID
	// Find the chain's end; the checkpoint then applies it.
	var first uint64 // the first record newer than the database
	end, last, readErr := scanJournal(io.NewSectionReader(j.f, 0, journalSize), journalSize, j.id, func(seq uint64, _ []jop) error {
		if seq > s.marked && first == 0 {
			first = seq
		}
		return nil
	})
	if first > s.marked+1 {
		// Records missing between the database and the journal: the
		// database is older than the journal (restored from a copy,
		// or the two copied at different times). Applying them would
		// put later changes on a state they did not follow.
		s.journalErr = fmt.Errorf("lease journal %s: records %d to %d follow %d, not %d, the database's last: not applied",
			path, first, last, first-1, s.marked)
		end = 0
	}
	j.off, j.next = end, max(last, s.marked)+1
	s.j = j
	if end > 0 && last > s.marked {
		if err := s.updateLocked(nil); err != nil {
			s.j = nil
			j.f.Close()
			return fmt.Errorf("applying the records a crash left in %s: %w", path, err)
		}
	}
	j.off = 0
	if readErr != nil {
		// What was readable is applied; the journal cannot be trusted
		// for more.
		s.j = nil
		j.f.Close()
		s.journalErr = fmt.Errorf("lease journal off, every change is a database transaction: reading %s after record %d: %w", path, last, readErr)
		return nil
	}
	s.idle = time.AfterFunc(time.Hour, s.idleCheckpoint)
	s.idle.Stop()
	return nil
}

// JournalProblem reports what went wrong with the journal when the store
// was opened (it could not be made or read, so changes are written to the
// database directly, or records were not applied), or nil. The store works
// either way; the daemon logs it.
func (s *Store) JournalProblem() error { return s.journalErr }

func (s *Store) init() error {
	return s.db.Update(func(tx *bolt.Tx) error {
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		if v := meta.Get(keySchema); v != nil {
			if len(v) != 4 {
				return fmt.Errorf("corrupt schema version %x", v)
			}
			if n := binary.BigEndian.Uint32(v); n > SchemaVersion {
				return fmt.Errorf("%w (schema %d, supported %d)", ErrNewerSchema, n, SchemaVersion)
			}
		} else if err := meta.Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion)); err != nil {
			return err
		}
		for _, b := range [][]byte{bucketLeases, bucketExpiry} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		// The journal's place in the database's history (journal.go).
		if v := meta.Get(keyJournal); len(v) == 8 {
			s.marked = binary.BigEndian.Uint64(v)
		}
		id := meta.Get(keyJournalID)
		if len(id) != 8 {
			id = make([]byte, 8)
			if _, err := rand.Read(id); err != nil {
				return err
			}
			if err := meta.Put(keyJournalID, id); err != nil {
				return err
			}
		}
		s.journalID = crc32.Checksum(id, crcTable)
		return nil
	})
}

// Close writes what the journal holds into the database and closes both.
func (s *Store) Close() error {
	s.jmu.Lock()
	defer s.jmu.Unlock()
	if s.closed {
		return s.db.Close() // bbolt says it is closed
	}
	s.closed = true
	if s.j == nil {
		return s.db.Close()
	}
	s.idle.Stop()
	var err error
	if s.pendingLocked() {
		err = s.updateLocked(nil)
	}
	err = errors.Join(err, s.j.f.Close())
	s.j = nil
	return errors.Join(err, s.db.Close())
}

// Path returns the database file's path.
func (s *Store) Path() string { return s.db.Path() }

func dbKey(k lease.Key) []byte {
	return []byte{byte(k.Proto), byte(k.ExternalPort >> 8), byte(k.ExternalPort)}
}

// record is the stored form of a lease.
type record struct {
	Proto        uint8        `json:"proto"`
	ExternalPort uint16       `json:"ext_port"`
	InternalAddr netip.Addr   `json:"int_addr"`
	InternalPort uint16       `json:"int_port"`
	Client       netip.Addr   `json:"client"`
	Origin       lease.Origin `json:"origin"`
	Nonce        string       `json:"nonce,omitempty"`
	Auth         string       `json:"auth,omitempty"`
	Description  string       `json:"desc,omitempty"`
	Filters      []filterRec  `json:"filters,omitempty"`
	LifetimeSec  int64        `json:"lifetime"`
	Created      int64        `json:"created"`
	Renewed      int64        `json:"renewed"`
	ExpiresMilli int64        `json:"expires"`
}

type filterRec struct {
	Prefix netip.Prefix `json:"prefix"`
	Port   uint16       `json:"port,omitempty"`
}

func toRecord(l lease.Lease) record {
	r := record{
		Proto:        uint8(l.Proto),
		ExternalPort: l.ExternalPort,
		InternalAddr: l.InternalAddr,
		InternalPort: l.InternalPort,
		Client:       l.Client,
		Origin:       l.Origin,
		Auth:         l.Auth,
		Description:  l.Description,
		LifetimeSec:  int64(l.Lifetime / time.Second),
		Created:      l.Created.Unix(),
		Renewed:      l.Renewed.Unix(),
		ExpiresMilli: l.Expires.UnixMilli(),
	}
	if l.Nonce != ([12]byte{}) {
		r.Nonce = hex.EncodeToString(l.Nonce[:])
	}
	for _, f := range l.Filters {
		r.Filters = append(r.Filters, filterRec{f.Prefix, f.Port})
	}
	return r
}

func (r record) lease() (lease.Lease, error) {
	l := lease.Lease{
		Proto:        firewall.Proto(r.Proto),
		ExternalPort: r.ExternalPort,
		InternalAddr: r.InternalAddr,
		InternalPort: r.InternalPort,
		Client:       r.Client,
		Origin:       r.Origin,
		Auth:         r.Auth,
		Description:  r.Description,
		Lifetime:     time.Duration(r.LifetimeSec) * time.Second,
		Created:      time.Unix(r.Created, 0),
		Renewed:      time.Unix(r.Renewed, 0),
		Expires:      time.UnixMilli(r.ExpiresMilli),
	}
	if r.Nonce != "" {
		b, err := hex.DecodeString(r.Nonce)
		if err != nil || len(b) != 12 {
			return l, fmt.Errorf("bad nonce %q", r.Nonce)
		}
		copy(l.Nonce[:], b)
	}
	for _, f := range r.Filters {
		l.Filters = append(l.Filters, firewall.Filter{Prefix: f.Prefix, Port: f.Port})
	}
	if !l.InternalAddr.Is4() || !l.Client.IsValid() || l.ExternalPort == 0 || l.InternalPort == 0 {
		return l, errors.New("incomplete record")
	}
	if l.Proto != firewall.TCP && l.Proto != firewall.UDP {
		return l, fmt.Errorf("protocol %d", l.Proto)
	}
	for _, f := range l.Filters {
		if !f.Prefix.IsValid() || !f.Prefix.Addr().Is4() {
			return l, fmt.Errorf("filter %v", f.Prefix)
		}
	}
	return l, nil
}

func putExpiry(b *bolt.Bucket, l lease.Lease) error {
	return b.Put(dbKey(l.Key()), binary.BigEndian.AppendUint64(nil, uint64(l.Expires.UnixMilli())))
}

// Put stores l (created or changed) durably.
func (s *Store) Put(l lease.Lease) error {
	return s.Apply([]lease.Lease{l}, nil)
}

// Delete removes the lease with key k durably; deleting what is absent is
// not an error.
func (s *Store) Delete(k lease.Key) error {
	return s.Apply(nil, []lease.Key{k})
}

// Apply stores puts (created or changed leases) and deletes the leases with
// keys in dels, durably and all or nothing: one journal record (with
// anything staged), or one transaction when the journal cannot take it.
func (s *Store) Apply(puts []lease.Lease, dels []lease.Key) error {
	ops := make([]jop, 0, len(dels)+len(puts)+1)
	for _, k := range dels {
		ops = append(ops, jop{kind: opDelete, key: dbKey(k)})
	}
	for _, l := range puts {
		v, err := json.Marshal(toRecord(l))
		if err != nil {
			return err
		}
		ops = append(ops, jop{kind: opPut, key: dbKey(l.Key()),
			expiry: binary.BigEndian.AppendUint64(nil, uint64(l.Expires.UnixMilli())), value: v})
	}
	direct := func(tx *bolt.Tx) error { return applyOps(tx, ops) }
	s.jmu.Lock()
	defer s.jmu.Unlock()
	j := s.j
	if j == nil {
		return s.updateLocked(direct) // no journal, or closed: bbolt says so
	}
	if j.spent {
		// A record given up after a failed write may be on disk at
		// j.off: a checkpoint stores its seq as applied, so that it is
		// stale, before anything is written after it.
		if err := s.updateLocked(nil); err != nil {
			return err
		}
	}
	st := s.takeStaged()
	rec := s.record(ops, st)
	if !j.fits(len(rec)) {
		s.restage(st)
		if len(rec) > journalSize {
			return s.updateLocked(direct)
		}
		if err := s.updateLocked(nil); err != nil { // makes room
			return err
		}
		st = s.takeStaged()
		if rec = s.record(ops, st); !j.fits(len(rec)) {
			s.restage(st)
			return s.updateLocked(direct)
		}
	}
	if err := j.write(rec); err != nil {
		// The record may be on disk, whole: its seq is spent, and the
		// next write is a transaction that stores it as applied (so a
		// later record does not follow it in the chain, and a restart
		// does not replay it after newer changes).
		s.restage(st)
		j.next++
		j.spent = true
		if uerr := s.updateLocked(direct); uerr != nil {
			return errors.Join(fmt.Errorf("writing the lease journal: %w", err), uerr)
		}
		return nil
	}
	j.off += int64(len(rec))
	j.next++
	s.idle.Reset(journalIdle)
	return nil
}

// record encodes ops and the staged values st as the journal's next
// record, in the journal's buffer.
func (s *Store) record(ops []jop, st map[string]stagedValue) []byte {
	for k, sv := range st {
		ops = append(ops, jop{kind: opMeta, key: []byte(k), value: sv.v})
	}
	s.j.buf = appendRecord(s.j.buf[:0], s.j.id, s.j.next, ops)
	return s.j.buf
}

// PutExpiries records the expiry of each lease in one transaction. Leases no
// longer stored are skipped. With no leases it writes only what is staged,
// if anything.
func (s *Store) PutExpiries(ls []lease.Lease) error {
	if len(ls) == 0 && !s.Staged() {
		return s.checkpoint()
	}
	return s.update(func(tx *bolt.Tx) error {
		leases, exp := tx.Bucket(bucketLeases), tx.Bucket(bucketExpiry)
		if 2*len(ls) >= exp.Stats().KeyN {
			return rewriteExpiries(tx, leases, exp, ls)
		}
		for _, l := range ls {
			if leases.Get(dbKey(l.Key())) == nil {
				continue
			}
			if err := putExpiry(exp, l); err != nil {
				return err
			}
		}
		return nil
	})
}

// rewriteExpiries writes the expiry bucket anew, with ls's expiries, in key
// order and with full pages. A checkpoint that changes most expiries
// rewrites nearly every page of the bucket anyway; bbolt splits a growing
// page in halves and never merges half-full pages back, so a bucket filled
// by lease creations in random order has twice the pages it needs, and
// every checkpoint would write them all.
func rewriteExpiries(tx *bolt.Tx, leases, exp *bolt.Bucket, ls []lease.Lease) error {
	type kv struct{ k, v []byte }
	var all []kv
	if err := exp.ForEach(func(k, v []byte) error {
		all = append(all, kv{bytes.Clone(k), bytes.Clone(v)})
		return nil
	}); err != nil {
		return err
	}
	changed := make(map[string][]byte, len(ls))
	for _, l := range ls {
		k := dbKey(l.Key())
		if leases.Get(k) != nil {
			changed[string(k)] = binary.BigEndian.AppendUint64(nil, uint64(l.Expires.UnixMilli()))
		}
	}
	for i := range all {
		if v, ok := changed[string(all[i].k)]; ok {
			all[i].v = v
			delete(changed, string(all[i].k))
		}
	}
	for k, v := range changed { // stored leases without an expiry record
		all = append(all, kv{[]byte(k), v})
	}
	slices.SortFunc(all, func(a, b kv) int { return bytes.Compare(a.k, b.k) })
	if err := tx.DeleteBucket(bucketExpiry); err != nil {
		return err
	}
	nb, err := tx.CreateBucket(bucketExpiry)
	if err != nil {
		return err
	}
	nb.FillPercent = 1.0 // appended in key order: fill each page
	for _, e := range all {
		if err := nb.Put(e.k, e.v); err != nil {
			return err
		}
	}
	return nil
}

// Load returns every stored lease with its latest stored expiry. Records that
// cannot be decoded are reported in bad (by key) and skipped, never fatal.
// It leaves none of the file's pages resident (dropMapped).
func (s *Store) Load() (ls []lease.Lease, bad []string, err error) {
	if err := s.checkpoint(); err != nil {
		return nil, nil, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		exp := tx.Bucket(bucketExpiry)
		return tx.Bucket(bucketLeases).ForEach(func(k, v []byte) error {
			var r record
			if err := json.Unmarshal(v, &r); err != nil {
				bad = append(bad, fmt.Sprintf("%x: %v", k, err))
				return nil
			}
			l, err := r.lease()
			if err != nil {
				bad = append(bad, fmt.Sprintf("%x: %v", k, err))
				return nil
			}
			if e := exp.Get(k); len(e) == 8 {
				l.Expires = time.UnixMilli(int64(binary.BigEndian.Uint64(e)))
			}
			ls = append(ls, l)
			return nil
		})
	})
	s.dropMapped() // every page was read: none is needed now
	return ls, bad, err
}

func epochValue(epoch uint32, at time.Time) []byte {
	v := binary.BigEndian.AppendUint32(nil, epoch)
	return binary.BigEndian.AppendUint64(v, uint64(at.Unix()))
}

// SaveEpoch records the PCP epoch (seconds) and the wall time it was read,
// at once (with anything staged).
func (s *Store) SaveEpoch(epoch uint32, at time.Time) error {
	s.stagedMu.Lock()
	delete(s.staged, string(keyEpoch)) // superseded
	s.nextVersion(string(keyEpoch))
	s.stagedMu.Unlock()
	v := epochValue(epoch, at)
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyEpoch, v)
	})
}

// StageEpoch is SaveEpoch for the periodic save: the value is written by the
// next write transaction that happens anyway (a checkpoint, a new lease), so
// that it costs no write of its own. Until then LoadEpoch returns the value
// saved before. Staged reports whether it is still waiting; a caller that
// needs it on disk calls SaveEpoch.
func (s *Store) StageEpoch(epoch uint32, at time.Time) {
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	if s.staged == nil {
		s.staged = map[string]stagedValue{}
	}
	k := string(keyEpoch)
	s.staged[k] = stagedValue{epochValue(epoch, at), s.nextVersion(k)}
}

// Staged reports whether values staged by StageEpoch wait for a write.
func (s *Store) Staged() bool {
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	return len(s.staged) > 0
}

// LoadEpoch returns the last saved epoch and when it was saved; ok is false
// if none was.
func (s *Store) LoadEpoch() (epoch uint32, at time.Time, ok bool, err error) {
	if err := s.checkpoint(); err != nil {
		return 0, time.Time{}, false, err
	}
	err = s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyEpoch)
		if len(v) != 12 {
			return nil
		}
		epoch = binary.BigEndian.Uint32(v)
		at = time.Unix(int64(binary.BigEndian.Uint64(v[4:])), 0)
		ok = true
		return nil
	})
	return epoch, at, ok, err
}

// SaveExternal records the router's external address, so that a dpfd
// started after the address changed knows to reset the PCP epoch (RFC 6887
// section 8.5). An invalid address is not saved.
func (s *Store) SaveExternal(addr netip.Addr) error {
	if !addr.IsValid() {
		return nil
	}
	v, err := addr.MarshalBinary()
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyExternal, v)
	})
}

// LoadExternal returns the external address last saved, or the zero Addr
// if none was (or the record is unreadable).
func (s *Store) LoadExternal() (netip.Addr, error) {
	var addr netip.Addr
	if err := s.checkpoint(); err != nil {
		return addr, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyExternal); v != nil {
			if err := addr.UnmarshalBinary(v); err != nil {
				addr = netip.Addr{}
			}
		}
		return nil
	})
	return addr, err
}

// SaveAuthSeqs records, for each authentication key id, the highest AUTH
// sequence number the server accepted, replacing what was saved before, so
// that after a restart requests captured earlier cannot be replayed. The
// server calls it at most once per checkpoint interval and at shutdown.
func (s *Store) SaveAuthSeqs(seqs map[[8]byte]uint64) error {
	m := make(map[string]uint64, len(seqs))
	for id, seq := range seqs {
		m[hex.EncodeToString(id[:])] = seq
	}
	v, err := json.Marshal(m)
	if err != nil {
		return err
	}
	return s.update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keyAuthSeq, v)
	})
}

// LoadAuthSeqs returns what SaveAuthSeqs saved last: an empty map when
// nothing was. Entries whose key id is not 16 hex digits are skipped.
func (s *Store) LoadAuthSeqs() (map[[8]byte]uint64, error) {
	out := map[[8]byte]uint64{}
	if err := s.checkpoint(); err != nil {
		return out, err
	}
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketMeta).Get(keyAuthSeq)
		if v == nil {
			return nil
		}
		var m map[string]uint64
		if err := json.Unmarshal(v, &m); err != nil {
			return fmt.Errorf("reading auth sequence numbers: %w", err)
		}
		for k, seq := range m {
			b, err := hex.DecodeString(k)
			if err != nil || len(b) != 8 {
				continue
			}
			out[[8]byte(b)] = seq
		}
		return nil
	})
	return out, err
}
