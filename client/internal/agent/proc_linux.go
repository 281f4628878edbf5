package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// procRoot is where procfs is mounted.
const procRoot = "/proc"

// readProcs returns self and every process below it, reading
// /proc/<pid>/task/<tid>/children from self down; where the kernel lacks
// those files (CONFIG_PROC_CHILDREN) it reads every process instead.
// Processes that exit meanwhile are left out.
func readProcs(self int) ([]proc, error) {
	selfTask := filepath.Join(procRoot, strconv.Itoa(self), "task", strconv.Itoa(self), "children")
	if _, err := os.Stat(selfTask); err != nil {
		return readAllProcs()
	}
	var procs []proc
	queue := []int{self}
	seen := map[int]bool{self: true}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		p, err := readStat(pid)
		if err != nil {
			continue
		}
		procs = append(procs, p)
		for _, c := range childPids(pid) {
			if !seen[c] {
				seen[c] = true
				queue = append(queue, c)
			}
		}
	}
	return procs, nil
}

// readAllProcs reads /proc/<pid>/stat of every process.
func readAllProcs() ([]proc, error) {
	d, err := os.Open(procRoot)
	if err != nil {
		return nil, err
	}
	defer d.Close()
	names, err := d.Readdirnames(-1)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", procRoot, err)
	}
	procs := make([]proc, 0, len(names))
	for _, n := range names {
		pid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		if p, err := readStat(pid); err == nil {
			procs = append(procs, p)
		}
	}
	return procs, nil
}

func readStat(pid int) (proc, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "stat"))
	if err != nil {
		return proc{}, err
	}
	return parseStat(b)
}

// childPids returns the children of every thread of pid.
func childPids(pid int) []int {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "task")
	d, err := os.Open(dir)
	if err != nil {
		return nil
	}
	tids, _ := d.Readdirnames(-1)
	d.Close()
	var pids []int
	for _, tid := range tids {
		b, err := os.ReadFile(filepath.Join(dir, tid, "children"))
		if err != nil {
			continue
		}
		for _, f := range strings.Fields(string(b)) {
			if c, err := strconv.Atoi(f); err == nil {
				pids = append(pids, c)
			}
		}
	}
	return pids
}

// socketInodes returns the inodes of the sockets pid has open. It returns
// nothing for a process it may not inspect (another user's, without root).
func socketInodes(pid int) []uint64 {
	dir := filepath.Join(procRoot, strconv.Itoa(pid), "fd")
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil
	}
	f := os.NewFile(uintptr(fd), dir)
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return nil
	}
	var inodes []uint64
	buf := make([]byte, 64) // "socket:[4294967295]" and anything longer is not a socket
	for _, n := range names {
		l, err := unix.Readlinkat(fd, n, buf)
		if err != nil || l >= len(buf) {
			continue
		}
		if ino, ok := parseSocketLink(string(buf[:l])); ok {
			inodes = append(inodes, ino)
		}
	}
	return inodes
}

// hasEnv reports whether pid's initial environment holds the entry kv.
func hasEnv(pid int, kv string) bool {
	b, err := os.ReadFile(filepath.Join(procRoot, strconv.Itoa(pid), "environ"))
	if err != nil {
		return false
	}
	for e := range bytes.SplitSeq(b, []byte{0}) {
		if string(e) == kv {
			return true
		}
	}
	return false
}

// ephemeralPorts reads the kernel's ephemeral port range.
func ephemeralPorts() ([2]uint16, error) {
	b, err := os.ReadFile(filepath.Join(procRoot, "sys/net/ipv4/ip_local_port_range"))
	if err != nil {
		return [2]uint16{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return [2]uint16{}, fmt.Errorf("ip_local_port_range: %q", b)
	}
	lo, err1 := strconv.ParseUint(f[0], 10, 16)
	hi, err2 := strconv.ParseUint(f[1], 10, 16)
	if err1 != nil || err2 != nil || lo > hi {
		return [2]uint16{}, fmt.Errorf("ip_local_port_range: %q", b)
	}
	return [2]uint16{uint16(lo), uint16(hi)}, nil
}
