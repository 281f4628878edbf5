package store

// The journal: a lease change is durable after one write and one fdatasync
// of a small record, instead of a bbolt commit (pages, fdatasync, meta
// page, fdatasync). BenchmarkPutDelete compares the two; src/bench/README.md
// has the figures.
//
// The journal is a file of fixed size next to the database
// ("leases.db-journal"), written with zeros when it is created so that a
// record's write changes no file metadata and fdatasync flushes only data.
// Records are written one after the other from offset 0. Each is
//
//	u32 payload length | u32 CRC-32C of (database id, seq, payload) | u64 seq | payload
//
// (big endian), and the payload is a list of operations, in the order a
// bbolt transaction would apply them:
//
//	1 key(3)                               delete a lease
//	2 key(3) expiry(8) uvarint len, value  put a lease (its JSON record)
//	3 uvarint len, key, uvarint len, value put a meta value (a staged epoch)
//
// Sequence numbers grow by one with every record and never start again:
// a checkpoint applies the records to the database in one bbolt
// transaction, which also stores the last applied seq (meta "journal"),
// and the next record is written at offset 0 again. Reading the journal
// (at Open, and at each checkpoint) follows the chain from offset 0 while
// each record is whole, its CRC matches and its seq is one more than the
// one before; the first that is not ends the journal. A record older than
// the stored seq is skipped, so a crash between a checkpoint's commit and
// the next write replays nothing twice; a torn last record was never
// acknowledged and is dropped. A record from an earlier round that a
// shorter new one did not overwrite has a smaller seq, so it ends the
// chain.
//
// The database id (meta "journal_id", 8 random bytes made with the
// database) in each record's CRC ties the journal to its database: a
// journal left beside a database that was deleted and made anew is not
// replayed into the new one.
//
// A checkpoint happens when a record does not fit, and before any other
// write to the database (the periodic PutExpiries, epoch, external
// address, AUTH sequence numbers), before any read, and in Close: a clean
// shutdown leaves nothing in the journal. If writing a record fails, the
// change is written the old way (a bbolt transaction, after a checkpoint),
// so a failing journal costs speed, never a lease.

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
)

const (
	// journalSize is the journal file's size: room for about 1,000 lease
	// records. A checkpoint holds what it applies in memory until its
	// transaction ends (bbolt keeps every put's key and value), so this
	// also bounds a checkpoint's transient memory.
	journalSize   = 256 << 10
	journalHeader = 16

	opDelete = 1
	opPut    = 2
	opMeta   = 3

	keyLen = 3 // dbKey's length
)

var (
	keyJournal   = []byte("journal")    // meta: the last seq applied to the database
	keyJournalID = []byte("journal_id") // meta: the database id in the records' CRC
	crcTable     = crc32.MakeTable(crc32.Castagnoli)
)

// journal is the open journal file. The Store's jmu guards it.
type journal struct {
	f    *os.File
	id   uint32 // CRC-32C of the database id: where each record's CRC starts
	off  int64  // where the next record goes; 0 when nothing is pending
	next uint64 // the next record's seq
	buf  []byte // reused for encoding
	// spent is set when a record's write failed after it may have
	// reached the disk: the next write must be a checkpoint.
	spent bool
}

// openJournal opens (or creates, full size) the journal at path.
func openJournal(path string) (*journal, error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if fi.Size() < journalSize {
		// Written, not fallocated: a write into an unwritten extent
		// changes metadata and makes every fdatasync a journal commit.
		zero := make([]byte, 64<<10)
		for o := fi.Size(); o < journalSize; o += int64(len(zero)) {
			if _, err := f.WriteAt(zero[:min(int64(len(zero)), journalSize-o)], o); err != nil {
				f.Close()
				return nil, fmt.Errorf("writing %s: %w", path, err)
			}
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return nil, err
		}
	}
	// The file's name must last too: sync the directory at every open,
	// as a crash may have come between the file's sync and this.
	d, err := os.Open(filepath.Dir(path))
	if err == nil {
		err = errors.Join(d.Sync(), d.Close())
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("syncing the directory of %s: %w", path, err)
	}
	return &journal{f: f}, nil
}

// jop is one operation of a record.
type jop struct {
	kind   byte
	key    []byte
	expiry []byte // opPut: 8 bytes
	value  []byte
}

// appendRecord appends the record (seq, ops) to b, for the database whose
// id's CRC is id.
func appendRecord(b []byte, id uint32, seq uint64, ops []jop) []byte {
	start := len(b)
	b = append(b, make([]byte, journalHeader)...)
	for _, op := range ops {
		b = append(b, op.kind)
		switch op.kind {
		case opDelete:
			b = append(b, op.key...)
		case opPut:
			b = append(b, op.key...)
			b = append(b, op.expiry...)
			b = binary.AppendUvarint(b, uint64(len(op.value)))
			b = append(b, op.value...)
		case opMeta:
			b = binary.AppendUvarint(b, uint64(len(op.key)))
			b = append(b, op.key...)
			b = binary.AppendUvarint(b, uint64(len(op.value)))
			b = append(b, op.value...)
		}
	}
	h := b[start:]
	binary.BigEndian.PutUint32(h[0:], uint32(len(h)-journalHeader))
	binary.BigEndian.PutUint64(h[8:], seq)
	binary.BigEndian.PutUint32(h[4:], crc32.Update(id, crcTable, h[8:]))
	return b
}

var errBadRecord = errors.New("bad journal record")

// decodeOps parses a record's payload.
func decodeOps(p []byte) ([]jop, error) {
	var ops []jop
	take := func(n uint64) ([]byte, bool) {
		if n > uint64(len(p)) {
			return nil, false
		}
		v := p[:n]
		p = p[n:]
		return v, true
	}
	lenThen := func() ([]byte, bool) {
		n, k := binary.Uvarint(p)
		if k <= 0 {
			return nil, false
		}
		p = p[k:]
		return take(n)
	}
	for len(p) > 0 {
		op := jop{kind: p[0]}
		p = p[1:]
		var ok bool
		switch op.kind {
		case opDelete:
			op.key, ok = take(keyLen)
		case opPut:
			if op.key, ok = take(keyLen); ok {
				if op.expiry, ok = take(8); ok {
					op.value, ok = lenThen()
				}
			}
		case opMeta:
			if op.key, ok = lenThen(); ok {
				op.value, ok = lenThen()
			}
		}
		if !ok {
			return nil, errBadRecord
		}
		ops = append(ops, op)
	}
	return ops, nil
}

// scanJournal reads the chain of records in r (a journal of size bytes)
// from offset 0 and calls fn for each, in order, with its seq and
// operations (in a buffer of their own: bbolt keeps a put's key and value
// until the transaction ends). It returns the offset after the last record
// and that record's seq; 0, 0 if the first is not whole. An error from fn
// or from reading ends the scan.
func scanJournal(r io.Reader, size int64, id uint32, fn func(seq uint64, ops []jop) error) (end int64, last uint64, err error) {
	br := bufio.NewReaderSize(r, 64<<10)
	var h [journalHeader]byte
	for end+journalHeader <= size {
		if _, err := io.ReadFull(br, h[:]); err != nil {
			return end, last, ignoreEOF(err)
		}
		n := int64(binary.BigEndian.Uint32(h[0:]))
		seq := binary.BigEndian.Uint64(h[8:])
		if n == 0 || n > size-end-journalHeader || (end > 0 && seq != last+1) {
			break
		}
		payload := make([]byte, n)
		if _, err := io.ReadFull(br, payload); err != nil {
			return end, last, ignoreEOF(err)
		}
		crc := crc32.Update(crc32.Update(id, crcTable, h[8:]), crcTable, payload)
		if crc != binary.BigEndian.Uint32(h[4:]) {
			break
		}
		ops, err := decodeOps(payload)
		if err != nil {
			break
		}
		if err := fn(seq, ops); err != nil {
			return end, last, err
		}
		end += journalHeader + n
		last = seq
	}
	return end, last, nil
}

func ignoreEOF(err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return nil
	}
	return err
}

// write writes rec at the journal's end and waits until it is on disk.
func (j *journal) write(rec []byte) error {
	if _, err := j.f.WriteAt(rec, j.off); err != nil {
		return err
	}
	return datasyncFn(j.f)
}

// datasyncFn is datasync; tests replace it to fail after the write.
var datasyncFn = datasync

// fits reports whether a record of n bytes fits after the pending ones.
func (j *journal) fits(n int) bool { return j.off+int64(n) <= journalSize }

// JournalRecordSizes returns the size in bytes (header included) of each
// record of the journal file at path that holds one operation, a lease put
// or a lease delete: the records of single map and delete requests. It
// follows the chain from offset 0 as Open does (the records since the last
// checkpoint, or those of the round before it) but does not check the
// records' CRCs, whose seed is in the database a running dpfd keeps
// locked. It is for tools that measure what dpfd writes (the benchmark
// sizes its disk probe with it), never for recovery.
func JournalRecordSizes(path string) (puts, deletes []int, err error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, nil, err
	}
	var last uint64
	for off := 0; off+journalHeader <= len(b); {
		n := int(binary.BigEndian.Uint32(b[off:]))
		seq := binary.BigEndian.Uint64(b[off+8:])
		if n == 0 || n > len(b)-off-journalHeader || (off > 0 && seq != last+1) {
			break
		}
		ops, err := decodeOps(b[off+journalHeader : off+journalHeader+n])
		if err != nil {
			break
		}
		if len(ops) == 1 {
			switch ops[0].kind {
			case opPut:
				puts = append(puts, journalHeader+n)
			case opDelete:
				deletes = append(deletes, journalHeader+n)
			}
		}
		off += journalHeader + n
		last = seq
	}
	return puts, deletes, nil
}
