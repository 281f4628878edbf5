package agent

import (
	"bufio"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestReadProcs checks the walk down the children files against a scan of
// every process, with a child and a grandchild of the test's own.
func TestReadProcs(t *testing.T) {
	cmd := exec.Command("sh", "-c", "sleep 30 & echo $!; wait")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
	}()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	grandchild, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Kill(grandchild, syscall.SIGKILL)
	self := os.Getpid()

	deadline := time.Now().Add(5 * time.Second)
	for {
		procs, err := readProcs(self)
		if err != nil {
			t.Fatal(err)
		}
		all, err := readAllProcs()
		if err != nil {
			t.Fatal(err)
		}
		tree := descendants(all, self, cmd.Process.Pid, nil, func(proc) bool { return false })
		walked := descendants(procs, self, cmd.Process.Pid, nil, func(proc) bool { return false })
		pids := func(m map[int]proc) []int {
			var s []int
			for pid := range m {
				s = append(s, pid)
			}
			slices.Sort(s)
			return s
		}
		if _, ok := walked[grandchild]; ok && slices.Equal(pids(tree), pids(walked)) {
			if !slices.ContainsFunc(procs, func(p proc) bool { return p.pid == self }) {
				t.Error("readProcs left out self")
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("walk %v, full scan %v, grandchild %d", pids(walked), pids(tree), grandchild)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
