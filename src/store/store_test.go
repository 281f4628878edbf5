package store

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

// openTemp opens a store in t.TempDir and checks its consistency on cleanup.
func openTemp(t *testing.T) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "leases.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.db.View(func(tx *bolt.Tx) error {
			for err := range tx.Check() {
				return err
			}
			return nil
		}); err != nil && !errors.Is(err, bolt.ErrDatabaseNotOpen) {
			t.Errorf("consistency check: %v", err)
		}
		s.Close()
	})
	return s, path
}

func sample(port uint16) lease.Lease {
	now := time.Unix(1_800_000_000, 0)
	l := lease.Lease{
		Proto:        firewall.TCP,
		ExternalPort: port,
		InternalAddr: netip.MustParseAddr("198.51.100.10"),
		InternalPort: 8080,
		Client:       netip.MustParseAddr("198.51.100.10"),
		Origin:       lease.OriginPCP,
		Description:  "web server",
		Filters:      []firewall.Filter{{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Port: 443}},
		Lifetime:     2 * time.Hour,
		Created:      now,
		Renewed:      now,
		Expires:      now.Add(2 * time.Hour),
	}
	copy(l.Nonce[:], "0123456789ab")
	return l
}

func TestPutLoadDeleteReopen(t *testing.T) {
	s, path := openTemp(t)
	a, b := sample(9000), sample(9001)
	b.Proto = firewall.UDP
	b.Origin = lease.OriginNATPMP
	b.Nonce = [12]byte{}
	b.Filters = nil
	for _, l := range []lease.Lease{a, b} {
		if err := s.Put(l); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Delete(lease.Key{Proto: firewall.TCP, ExternalPort: 1}); err != nil {
		t.Fatalf("deleting absent: %v", err)
	}
	s.Close()
	s2, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	ls, bad, err := s2.Load()
	if err != nil || len(bad) != 0 || len(ls) != 2 {
		t.Fatalf("load: %d leases, bad %v, err %v", len(ls), bad, err)
	}
	got := map[lease.Key]lease.Lease{}
	for _, l := range ls {
		got[l.Key()] = l
	}
	for _, want := range []lease.Lease{a, b} {
		g := got[want.Key()]
		if g.InternalAddr != want.InternalAddr || g.InternalPort != want.InternalPort || g.Client != want.Client ||
			g.Origin != want.Origin || g.Nonce != want.Nonce || g.Description != want.Description ||
			g.Lifetime != want.Lifetime || !g.Expires.Equal(want.Expires) || !g.Created.Equal(want.Created) ||
			len(g.Filters) != len(want.Filters) {
			t.Errorf("round trip:\n got %+v\nwant %+v", g, want)
		}
	}
	if err := s2.Delete(a.Key()); err != nil {
		t.Fatal(err)
	}
	ls, _, _ = s2.Load()
	if len(ls) != 1 || ls[0].Key() != b.Key() {
		t.Fatalf("after delete: %+v", ls)
	}
}

func TestPutExpiries(t *testing.T) {
	s, _ := openTemp(t)
	a := sample(9000)
	if err := s.Put(a); err != nil {
		t.Fatal(err)
	}
	a.Expires = a.Expires.Add(time.Hour)
	gone := sample(9999) // never stored: skipped
	if err := s.PutExpiries([]lease.Lease{a, gone}); err != nil {
		t.Fatal(err)
	}
	ls, _, _ := s.Load()
	if len(ls) != 1 || !ls[0].Expires.Equal(a.Expires) {
		t.Fatalf("expiries: %+v", ls)
	}
}

func TestEpoch(t *testing.T) {
	s, _ := openTemp(t)
	if _, _, ok, err := s.LoadEpoch(); ok || err != nil {
		t.Fatalf("fresh store has an epoch (%v)", err)
	}
	at := time.Unix(1_800_000_000, 0)
	if err := s.SaveEpoch(12345, at); err != nil {
		t.Fatal(err)
	}
	e, gotAt, ok, err := s.LoadEpoch()
	if !ok || err != nil || e != 12345 || !gotAt.Equal(at) {
		t.Fatalf("epoch %d at %v ok %v err %v", e, gotAt, ok, err)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	s, path := openTemp(t)
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketMeta).Put(keySchema, binary.BigEndian.AppendUint32(nil, SchemaVersion+1))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := Open(path); !errors.Is(err, ErrNewerSchema) {
		t.Fatalf("err = %v, want ErrNewerSchema", err)
	}
}

func TestCorruptRecordSkipped(t *testing.T) {
	s, _ := openTemp(t)
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLeases).Put([]byte{6, 0, 1}, []byte("{not json"))
	})
	if err != nil {
		t.Fatal(err)
	}
	ls, bad, err := s.Load()
	if err != nil || len(ls) != 1 || len(bad) != 1 {
		t.Fatalf("leases %d bad %v err %v", len(ls), bad, err)
	}
}

func TestSecondOpenerIsRefused(t *testing.T) {
	_, path := openTemp(t)
	start := time.Now()
	_, err := Open(path)
	if err == nil || !strings.Contains(err.Error(), "locked by another process") {
		t.Fatalf("err = %v", err)
	}
	if d := time.Since(start); d > 10*openTimeout {
		t.Fatalf("took %v", d)
	}
}

// TestCrashKeepsAcknowledgedLeases runs a child process that stores leases
// and acknowledges each on stdout, kills it with SIGKILL part way, and checks
// that every acknowledged lease is in the reopened database.
func TestCrashKeepsAcknowledgedLeases(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), "DPF_STORE_CRASH_CHILD="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[uint16]bool{}
	sc := bufio.NewScanner(out)
	for sc.Scan() && len(acked) < 200 {
		var port uint16
		if _, err := fmt.Sscanf(sc.Text(), "acked %d", &port); err == nil {
			acked[port] = true
		}
	}
	cmd.Process.Kill() // SIGKILL, mid-stream
	cmd.Wait()
	if len(acked) < 200 {
		t.Fatalf("child acknowledged only %d leases", len(acked))
	}
	s, err := Open(path)
	if err != nil {
		t.Fatalf("reopen after crash: %v", err)
	}
	defer s.Close()
	ls, bad, err := s.Load()
	if err != nil || len(bad) != 0 {
		t.Fatalf("load: bad %v err %v", bad, err)
	}
	have := map[uint16]bool{}
	for _, l := range ls {
		have[l.ExternalPort] = true
	}
	for p := range acked {
		if !have[p] {
			t.Errorf("acknowledged lease %d lost", p)
		}
	}
}

// TestMain runs the crash child when asked to.
func TestMain(m *testing.M) {
	if path := os.Getenv("DPF_STORE_CRASH_CHILD"); path != "" {
		crashChild(path)
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// crashChild is the child of TestCrashKeepsAcknowledgedLeases: it stores
// leases and acknowledges each once Put returned, until it is killed.
func crashChild(path string) {
	s, err := Open(path)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	for i := range 5000 {
		port := uint16(10000 + i)
		if err := s.Put(sample(port)); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Stdout.WriteString("acked " + strconv.Itoa(int(port)) + "\n")
	}
}

func TestInvalidRecordSkipped(t *testing.T) {
	s, _ := openTemp(t)
	bad := sample(9001)
	bad.Proto = firewall.Proto(1)
	if err := s.Put(bad); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(sample(9000)); err != nil {
		t.Fatal(err)
	}
	ls, badKeys, err := s.Load()
	if err != nil || len(ls) != 1 || len(badKeys) != 1 {
		t.Fatalf("leases %d bad %v err %v", len(ls), badKeys, err)
	}
}
