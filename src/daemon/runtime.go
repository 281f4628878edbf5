package daemon

import (
	"bytes"
	"math"
	"os"
	"runtime"
	"strconv"

	"github.com/dpf-router/dpf/src/control"
)

// runtimeStats measures the process's resource use for the status call.
// runtime.ReadMemStats stops the world for a few microseconds, which a
// status request can afford.
func runtimeStats() control.Runtime {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	rt := control.Runtime{Goroutines: runtime.NumGoroutine(), HeapInuse: ms.HeapInuse, OpenFDs: -1}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		rt.RSS, _ = parseVmRSS(b)
	}
	if ents, err := os.ReadDir("/proc/self/fd"); err == nil {
		rt.OpenFDs = len(ents) - 1 // less the descriptor ReadDir itself had open
	}
	return rt
}

// parseVmRSS returns the VmRSS line of /proc/PID/status ("VmRSS:  1234 kB")
// in bytes, and whether there was a well-formed one.
func parseVmRSS(status []byte) (uint64, bool) {
	for len(status) > 0 {
		var line []byte
		line, status, _ = bytes.Cut(status, []byte{'\n'})
		rest, ok := bytes.CutPrefix(line, []byte("VmRSS:"))
		if !ok {
			continue
		}
		f := bytes.Fields(rest)
		if len(f) != 2 || string(f[1]) != "kB" {
			return 0, false
		}
		kb, err := strconv.ParseUint(string(f[0]), 10, 64)
		if err != nil || kb > math.MaxUint64/1024 {
			return 0, false
		}
		return kb * 1024, true
	}
	return 0, false
}
