package agent

// The program's surroundings: its environment, the agent socket, the
// process attributes Run changes, and how its exit is reported.

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// foregroundGroup returns the foreground process group of the controlling
// terminal, or -1 without one.
func foregroundGroup() int {
	f, err := os.Open("/dev/tty")
	if err != nil {
		return -1
	}
	defer f.Close()
	pgrp, err := unix.IoctlGetInt(int(f.Fd()), unix.TIOCGPGRP)
	if err != nil {
		return -1
	}
	return pgrp
}

// listenAgent creates the agent socket in a new private directory.
func listenAgent() (dir, path string, ln *net.UnixListener, err error) {
	dir, err = os.MkdirTemp("", "dpf-agent-")
	if err == nil && len(filepath.Join(dir, "agent.sock")) >= len(unix.RawSockaddrUnix{}.Path) {
		os.Remove(dir) // TMPDIR is too deep for a unix socket path
		dir, err = os.MkdirTemp("/tmp", "dpf-agent-")
	}
	if err != nil {
		return "", "", nil, fmt.Errorf("agent: socket directory: %w", err)
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("agent: socket directory: %w", err)
	}
	path = filepath.Join(dir, "agent.sock")
	ln, err = net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		os.RemoveAll(dir)
		return "", "", nil, fmt.Errorf("agent: socket: %w", err)
	}
	return dir, path, ln, nil
}

// childEnv returns base with the agent's variables set and lib prepended to
// LD_PRELOAD (kept once if it is already there).
func childEnv(base []string, sockPath, lib string, shimTimeout time.Duration) []string {
	env := make([]string, 0, len(base)+3)
	var preload []string
	for _, kv := range base {
		k, v, _ := strings.Cut(kv, "=")
		switch k {
		case EnvAgentSock, EnvMapTimeout:
			continue
		case "LD_PRELOAD":
			preload = strings.FieldsFunc(v, func(r rune) bool { return r == ' ' || r == ':' })
			continue
		}
		env = append(env, kv)
	}
	env = append(env, EnvAgentSock+"="+sockPath, EnvMapTimeout+"="+strconv.FormatInt(shimTimeout.Milliseconds(), 10))
	if lib != "" {
		kept := []string{lib}
		for _, p := range preload {
			if p != lib {
				kept = append(kept, p)
			}
		}
		preload = kept
	}
	if len(preload) > 0 {
		env = append(env, "LD_PRELOAD="+strings.Join(preload, " "))
	}
	return env
}

// secureExec says why the dynamic loader would run path in secure-execution
// mode (ld.so(8)), ignoring LD_PRELOAD for a library outside the trusted
// directories, or "" if it would not.
func secureExec(path string) string {
	fi, err := os.Stat(path)
	if err != nil {
		return ""
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	switch {
	case ok && fi.Mode()&os.ModeSetuid != 0 && int(st.Uid) != os.Geteuid():
		return "is set-user-ID"
	case ok && fi.Mode()&os.ModeSetgid != 0 && int(st.Gid) != os.Getegid():
		return "is set-group-ID"
	}
	if _, err := unix.Getxattr(path, "security.capability", nil); err == nil {
		return "has file capabilities"
	}
	return ""
}

// exitStatus is a shell's $? for st: the exit code, or 128+n after signal n.
func exitStatus(st *os.ProcessState) int {
	if st == nil {
		return -1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}

// subreaper counts the Runs that need the process to be a child subreaper:
// the attribute belongs to the whole process, so this state must be global.
var subreaper struct {
	mu    sync.Mutex
	users int
	prev  int // the attribute before the first user
}

func acquireSubreaper() error {
	subreaper.mu.Lock()
	defer subreaper.mu.Unlock()
	if subreaper.users == 0 {
		prev := new(int32) // on the heap, which does not move
		err := unix.Prctl(unix.PR_GET_CHILD_SUBREAPER, uintptr(unsafe.Pointer(prev)), 0, 0, 0)
		runtime.KeepAlive(prev)
		if err != nil {
			return fmt.Errorf("PR_GET_CHILD_SUBREAPER: %w", err)
		}
		if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
			return fmt.Errorf("PR_SET_CHILD_SUBREAPER: %w", err)
		}
		subreaper.prev = int(*prev)
	}
	subreaper.users++
	return nil
}

func releaseSubreaper() {
	subreaper.mu.Lock()
	defer subreaper.mu.Unlock()
	subreaper.users--
	if subreaper.users == 0 && subreaper.prev == 0 {
		unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	}
}
