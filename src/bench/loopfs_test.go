package bench

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpf-router/dpf/src/internal/testenv"
)

func TestParseBlockStat(t *testing.T) {
	// A loop device's stat line: 17 fields on Linux 5.5 and later.
	n, err := parseBlockStat("     120        0     4242      31      880      12    70400     907        0     944     938        0        0        0        0        3        0\n")
	if err != nil || n != 70400 {
		t.Fatalf("parseBlockStat = %d, %v; want 70400, nil", n, err)
	}
	// Linux before 4.18 printed 11 fields.
	if n, err := parseBlockStat("1 2 3 4 5 6 7 8 9 10 11"); err != nil || n != 7 {
		t.Fatalf("11 fields: %d, %v; want 7", n, err)
	}
	for _, bad := range []string{"", "1 2 3 4 5 6 7", "1 2 3 4 5 6 x 8 9 10 11", "1 2 3 4 5 6 -7 8 9 10 11",
		"1 2 3 4 5 6 36028797018963968 8 9 10 11"} {
		if _, err := parseBlockStat(bad); err == nil {
			t.Errorf("parseBlockStat(%q) accepted", bad)
		}
	}
}

// FuzzParseBlockStat: any text is parsed or refused, never a panic, and an
// accepted count converts to bytes without overflow.
func FuzzParseBlockStat(f *testing.F) {
	f.Add("1 2 3 4 5 6 7 8 9 10 11")
	f.Add("     120        0     4242      31      880      12    70400     907        0     944     938        0        0        0        0        3        0\n")
	f.Add(strings.Repeat("9 ", 20))
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBlockStat(s)
		if err == nil && n*512/512 != n {
			t.Fatalf("%d sectors overflow as bytes, from %q", n, s)
		}
	})
}

// TestLoopFS makes the write pass's file system, checks that durable
// writes to it show in its count and not much more, and that closing it
// leaves nothing behind.
func TestLoopFS(t *testing.T) {
	testenv.RequireRoot(t)
	parent := t.TempDir()
	l, err := newLoopFS(parent)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	f, err := os.Create(filepath.Join(l.dir, "leases.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A file first written in one large piece, as bbolt's and dpfd's
	// journal are: its later 4 KiB writes must count as 4 KiB, not as the
	// page-cache folio they land in.
	if _, err := f.Write(make([]byte, 1<<20)); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	before, err := l.written()
	if err != nil {
		t.Fatal(err)
	}
	const writes = 32
	page := make([]byte, 4096)
	for i := range writes {
		page[0] = byte(i + 1)
		if _, err := f.WriteAt(page, int64(i%8)*65536); err != nil {
			t.Fatal(err)
		}
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	}
	after, err := l.written()
	if err != nil {
		t.Fatal(err)
	}
	// Each write reaches the device; the file system's own journal may
	// add a few blocks, but nowhere near a 64 KiB folio per write.
	got := after - before
	t.Logf("%d durable 4 KiB writes: %d bytes reached the device", writes, got)
	if got < writes*4096 || got > writes*4096*3 {
		t.Errorf("%d durable 4 KiB writes: device count grew by %d bytes; want %d to %d", writes, got, writes*4096, writes*4096*3)
	}
	f.Close()
	dev := l.dev
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(l.img); !os.IsNotExist(err) {
		t.Errorf("image %s left behind (%v)", l.img, err)
	}
	if out, _ := runTool("losetup", "-a"); strings.Contains(out, l.img) {
		t.Errorf("%s still attached: %s", dev, out)
	}
}
