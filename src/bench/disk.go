package bench

import (
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// DiskSync is the latency of one 4 KiB write and fdatasync in the work
// directory, measured at the start of a run: the floor under a durable
// map (dpfd writes one journal record per batch of changes), and the
// part of a map's time that moves most from one moment of a shared
// machine to the next.
type DiskSync struct {
	Run int           `json:"run"`
	P50 time.Duration `json:"p50_ns"`
	P99 time.Duration `json:"p99_ns"`
}

// diskSyncSamples is how many write+fdatasync pairs make one DiskSync.
const diskSyncSamples = 200

// measureDiskSync times diskSyncSamples writes of 4 KiB, each followed by
// fdatasync, over a written (not sparse) file in dir, as dpfd's journal is.
func measureDiskSync(dir string, run int) (DiskSync, error) {
	f, err := os.CreateTemp(dir, "disksync-*")
	if err != nil {
		return DiskSync{}, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 64<<10)
	if _, err := f.Write(buf); err != nil {
		return DiskSync{}, err
	}
	if err := f.Sync(); err != nil {
		return DiskSync{}, err
	}
	lat := make([]time.Duration, 0, diskSyncSamples)
	for i := range diskSyncSamples {
		start := time.Now()
		if _, err := f.WriteAt(buf[:4096], int64(i%16)*4096); err != nil {
			return DiskSync{}, err
		}
		if err := datasync(f); err != nil {
			return DiskSync{}, fmt.Errorf("fdatasync %s: %w", filepath.Base(f.Name()), err)
		}
		lat = append(lat, time.Since(start))
	}
	return DiskSync{Run: run, P50: Percentile(lat, 50), P99: Percentile(lat, 99)}, nil
}
