package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The renewal write pass keeps the daemon's lease database on a file
// system of its own, on a loop device, and counts the bytes that reach that
// device. The kernel's per-process write_bytes (/proc/PID/io) is not that
// count on this project's machines: with large page-cache folios (ext4 has
// them since Linux 6.16) a 4 KiB write into a folio that an earlier larger
// write made counts the whole folio (16 KiB after bbolt's first write of
// four pages, up to 128 KiB for a journal written in 64 KiB pieces), while
// writeback sends only the blocks that changed. Measured on this machine:
// 50 writes of 4 KiB into a file first written in one 1 MiB piece took 128
// KiB each in write_bytes and 4.3 KiB each on the device.
const (
	loopFSSize = 64 << 20
	// loopFSTimeout bounds each tool the set-up runs.
	loopFSTimeout = 30 * time.Second
)

// loopFS is an ext4 file system on a loop device, mounted on dir. Nothing
// else writes to it, so the device's write counter is the daemon's.
type loopFS struct {
	dir, img, dev string
	mounted       bool
}

// newLoopFS makes, attaches and mounts a fresh file system under parent.
// The inode tables and the file system journal are written at once, not
// later by a kernel thread that would write during the measurement.
func newLoopFS(parent string) (l *loopFS, err error) {
	l = &loopFS{img: filepath.Join(parent, "lease-fs.img"), dir: filepath.Join(parent, "lease-fs")}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	f, err := os.Create(l.img)
	if err != nil {
		return l, err
	}
	err = f.Truncate(loopFSSize)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return l, err
	}
	if _, err := runTool("mkfs.ext4", "-q", "-F", "-b", "4096", "-E", "lazy_itable_init=0,lazy_journal_init=0", l.img); err != nil {
		return l, err
	}
	out, err := runTool("losetup", "--find", "--show", l.img)
	if err != nil {
		return l, err
	}
	l.dev = strings.TrimSpace(out)
	if !strings.HasPrefix(l.dev, "/dev/loop") {
		dev := l.dev
		l.dev = ""
		return l, fmt.Errorf("losetup printed %q, not a loop device", dev)
	}
	if err := os.MkdirAll(l.dir, 0o755); err != nil {
		return l, err
	}
	if _, err := runTool("mount", "-t", "ext4", l.dev, l.dir); err != nil {
		return l, err
	}
	l.mounted = true
	return l, nil
}

// written returns the bytes written to the device so far. It first writes
// out what the file system holds back (dirty pages, a pending journal
// commit), so that the count belongs to the writes made before the call.
func (l *loopFS) written() (uint64, error) {
	fd, err := unix.Open(l.dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	err = unix.Syncfs(fd)
	unix.Close(fd)
	if err != nil {
		return 0, fmt.Errorf("syncfs %s: %w", l.dir, err)
	}
	b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(l.dev), "stat"))
	if err != nil {
		return 0, err
	}
	sectors, err := parseBlockStat(string(b))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", l.dev, err)
	}
	return sectors * 512, nil
}

// close unmounts the file system, detaches the device and removes the
// image. It may be called on a half-made loopFS.
func (l *loopFS) close() error {
	var errs []error
	if l.mounted {
		if err := unix.Unmount(l.dir, 0); err != nil {
			errs = append(errs, fmt.Errorf("unmounting %s: %w", l.dir, err))
		} else {
			l.mounted = false
		}
	}
	if l.dev != "" && !l.mounted {
		if _, err := runTool("losetup", "-d", l.dev); err != nil {
			errs = append(errs, err)
		} else {
			l.dev = ""
		}
	}
	if !l.mounted {
		os.Remove(l.dir)
		os.Remove(l.img)
	}
	return errors.Join(errs...)
}

// parseBlockStat returns the sectors written from a block device's stat
// file (Documentation/block/stat.rst): the seventh of its fields, each a
// decimal count. A sector there is 512 bytes whatever the device's own.
func parseBlockStat(s string) (uint64, error) {
	f := strings.Fields(s)
	if len(f) < 11 {
		return 0, fmt.Errorf("block stat: %d fields, want at least 11", len(f))
	}
	for i, v := range f {
		if _, err := strconv.ParseUint(v, 10, 64); err != nil {
			return 0, fmt.Errorf("block stat field %d %q: not a count", i+1, v)
		}
	}
	n, _ := strconv.ParseUint(f[6], 10, 64)
	if n > 1<<54 { // sectors*512 must fit in a uint64
		return 0, fmt.Errorf("block stat: %d sectors written is out of range", n)
	}
	return n, nil
}

// runTool runs a set-up tool and returns its output, or an error that
// shows what it printed.
func runTool(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), loopFSTimeout)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}
