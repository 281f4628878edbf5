package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The mappings a dpf process holds are written to a small JSON file per
// process in the state directory, so that `dpf status` can list this host's
// mappings (PCP and NAT-PMP have no "list" request). A file whose process is
// gone is ignored and removed.

// stateRecord is one mapping as `dpf status` shows it.
type stateRecord struct {
	Proto    string    `json:"proto"`
	Internal string    `json:"internal"`
	External string    `json:"external"`
	Expires  time.Time `json:"expires"`
	Command  string    `json:"command"` // "expose" or the program run
}

type stateFile struct {
	PID      int           `json:"pid"`
	Gateway  string        `json:"gateway"`
	Protocol string        `json:"protocol"`
	Mappings []stateRecord `json:"mappings"`
}

// stateDir is /run/dpf for root and $XDG_RUNTIME_DIR/dpf (or a directory in
// the temporary directory named after the user) otherwise; DPF_STATE_DIR
// overrides it.
func stateDir() string {
	if d := os.Getenv("DPF_STATE_DIR"); d != "" {
		return d
	}
	if os.Geteuid() == 0 {
		return "/run/dpf"
	}
	if d := os.Getenv("XDG_RUNTIME_DIR"); d != "" {
		return filepath.Join(d, "dpf")
	}
	return filepath.Join(os.TempDir(), "dpf-"+strconv.Itoa(os.Geteuid()))
}

// stateWriter keeps this process's state file up to date.
type stateWriter struct {
	mu   sync.Mutex
	path string
	st   stateFile
	keys map[string]int // proto/internal -> index in st.Mappings
}

func newStateWriter(gateway, protocol string) *stateWriter {
	dir := stateDir()
	w := &stateWriter{st: stateFile{PID: os.Getpid(), Gateway: gateway, Protocol: protocol}, keys: map[string]int{}}
	if os.MkdirAll(dir, 0o700) == nil && ownDir(dir) == nil {
		w.path = filepath.Join(dir, strconv.Itoa(os.Getpid())+".json")
	}
	return w
}

// ownDir checks that dir is a real directory (not a symbolic link) owned by
// this user and closed to everyone else, so that no other user can plant
// files or links in it (the fallback directory lives in /tmp). Without it
// dpf keeps no state and `dpf status` lists no mappings.
func ownDir(dir string) error {
	fi, err := os.Lstat(dir)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return fmt.Errorf("state directory %s is not a directory", dir)
	case !ok || int(st.Uid) != os.Geteuid():
		return fmt.Errorf("state directory %s is not owned by this user", dir)
	case fi.Mode().Perm()&0o077 != 0:
		return fmt.Errorf("state directory %s is open to other users (mode %v)", dir, fi.Mode().Perm())
	}
	return nil
}

// set records or updates a mapping; remove forgets it.
func (w *stateWriter) set(r stateRecord) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := r.Proto + "/" + r.Internal
	if i, ok := w.keys[k]; ok {
		w.st.Mappings[i] = r
	} else {
		w.keys[k] = len(w.st.Mappings)
		w.st.Mappings = append(w.st.Mappings, r)
	}
	w.writeLocked()
}

func (w *stateWriter) remove(proto, internal string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	k := proto + "/" + internal
	i, ok := w.keys[k]
	if !ok {
		return
	}
	w.st.Mappings = append(w.st.Mappings[:i], w.st.Mappings[i+1:]...)
	delete(w.keys, k)
	for kk, j := range w.keys {
		if j > i {
			w.keys[kk] = j - 1
		}
	}
	w.writeLocked()
}

func (w *stateWriter) writeLocked() {
	if w.path == "" {
		return
	}
	b, err := json.Marshal(w.st)
	if err != nil {
		return
	}
	// A fresh temporary file (O_EXCL, never a link someone planted),
	// then an atomic rename.
	f, err := os.CreateTemp(filepath.Dir(w.path), ".state-*")
	if err != nil {
		return
	}
	_, werr := f.Write(b)
	if cerr := f.Close(); werr != nil || cerr != nil {
		os.Remove(f.Name())
		return
	}
	if os.Rename(f.Name(), w.path) != nil {
		os.Remove(f.Name())
	}
}

// close removes the state file.
func (w *stateWriter) close() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.path != "" {
		os.Remove(w.path)
	}
}

// readStates returns the state of every live dpf process, oldest PID first.
func readStates() ([]stateFile, error) {
	dir := stateDir()
	if _, err := os.Lstat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err := ownDir(dir); err != nil {
		return nil, err
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	var out []stateFile
	for _, e := range ents {
		name := e.Name()
		if !strings.HasSuffix(name, ".json") {
			continue
		}
		pid, err := strconv.Atoi(strings.TrimSuffix(name, ".json"))
		if err != nil {
			continue
		}
		path := filepath.Join(dir, name)
		if !alive(pid) {
			os.Remove(path)
			continue
		}
		b, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		var st stateFile
		if err := json.Unmarshal(b, &st); err != nil {
			continue // half-written by a crashed dpf; skip it
		}
		out = append(out, st)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].PID < out[j].PID })
	return out, nil
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
