package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DiskSync is the latency of one 4 KiB write and fdatasync in the work
// directory, measured at the start of a run: the part of a map's time
// that moves most from one moment of a shared machine to the next. The
// figure that judges dpfd's map latency is measured beside it, in the
// same minute and with the same write size (syncProbe in fillPass).
type DiskSync struct {
	Run int           `json:"run"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
}

// diskSyncSamples is how many write+fdatasync pairs make one DiskSync.
const diskSyncSamples = 200

// measureDiskSync times diskSyncSamples writes of 4 KiB, each followed by
// fdatasync, in dir, one right after the other.
func measureDiskSync(dir string, run int) (DiskSync, error) {
	lat, err := syncProbe(dir, []int{4096}, diskSyncSamples, 0, time.Minute)
	if err != nil {
		return DiskSync{}, err
	}
	return DiskSync{Run: run, P50: Percentile(lat, 50), P99: Percentile(lat, 99)}, nil
}

// probeFileSize is the size of the probe's file: that of dpfd's journal
// (journalSize in src/store/journal.go).
const probeFileSize = 256 << 10

// syncProbe times writes followed by fdatasync the way dpfd writes its
// journal: one after the other into a file of probeFileSize bytes written
// (not just allocated) beforehand, so that a write changes no file
// metadata, starting again at the beginning when the file is full. It
// makes up to n rounds, one every every (or back to back when every is
// 0), each a write of each of sizes in turn, and returns the latencies of
// the first size's writes. It starts no new round after budget has passed,
// but makes at least minSamples.
func syncProbe(dir string, sizes []int, n int, every, budget time.Duration) ([]time.Duration, error) {
	big := 0
	for _, size := range sizes {
		if size <= 0 || size > probeFileSize {
			return nil, fmt.Errorf("disk probe: write size %d out of range", size)
		}
		big = max(big, size)
	}
	f, err := os.CreateTemp(dir, "disksync-*")
	if err != nil {
		return nil, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(make([]byte, probeFileSize)); err != nil {
		return nil, err
	}
	if err := f.Sync(); err != nil {
		return nil, err
	}
	buf := make([]byte, big)
	for i := range buf {
		buf[i] = byte(i)
	}
	lat := make([]time.Duration, 0, n)
	start := time.Now()
	var off int64
	for i := range n {
		if i >= minSamples && time.Since(start) >= budget {
			break
		}
		if d := time.Until(start.Add(time.Duration(i) * every)); d > 0 {
			time.Sleep(d)
		}
		for j, size := range sizes {
			if off+int64(size) > probeFileSize {
				off = 0
			}
			t := time.Now()
			if _, err := f.WriteAt(buf[:size], off); err != nil {
				return nil, err
			}
			if err := datasync(f); err != nil {
				return nil, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
			}
			if j == 0 {
				lat = append(lat, time.Since(t))
			}
			off += int64(size)
		}
	}
	return lat, nil
}
