package bench

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Bounds of the wait for a quiet machine before a pass.
const (
	// machineQuietBusy is the most CPU the whole machine may use in one
	// quietStep and count as quiet: a tenth of one CPU.
	machineQuietBusy = 0.1
	// machineQuietLimit bounds the wait.
	machineQuietLimit = 15 * time.Second
)

// cpuTimes returns the machine's busy and total CPU time so far, in clock
// ticks, from the first line of /proc/stat.
func cpuTimes() (busy, total uint64, err error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	line, err := bufio.NewReader(f).ReadString('\n')
	if err != nil {
		return 0, 0, fmt.Errorf("reading /proc/stat: %w", err)
	}
	return parseCPULine(line)
}

// parseCPULine reads the aggregate line of /proc/stat ("cpu  user nice
// system idle iowait irq softirq steal ..."): busy is every field but idle
// and iowait, total all of them.
func parseCPULine(line string) (busy, total uint64, err error) {
	fields := strings.Fields(line)
	if len(fields) < 6 || fields[0] != "cpu" {
		return 0, 0, fmt.Errorf("/proc/stat: unexpected first line %q", line)
	}
	for i, s := range fields[1:] {
		v, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, 0, fmt.Errorf("/proc/stat field %d: %w", i+1, err)
		}
		if total+v < total {
			return 0, 0, fmt.Errorf("/proc/stat: times overflow")
		}
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total, nil
}

// waitQuietMachine waits, for at most machineQuietLimit, until the whole
// machine used less than machineQuietBusy of one CPU during one quietStep,
// and returns how long it waited. A pass starts right after the previous
// pass's labs were deleted, and the kernel tears network namespaces down in
// the background (for a second or more with a daemon's ruleset and tens of
// thousands of conntrack entries), which would otherwise fall on the first
// figures of the next pass.
func waitQuietMachine() (time.Duration, error) {
	start := time.Now()
	b0, _, err := cpuTimes()
	at := time.Now()
	for err == nil && time.Since(start) < machineQuietLimit {
		time.Sleep(quietStep)
		var b1 uint64
		if b1, _, err = cpuTimes(); err != nil {
			break
		}
		// CPUs busy on average over the step as it really lasted (a
		// sleep may overrun on a busy machine).
		now := time.Now()
		if float64(b1-b0)/(now.Sub(at).Seconds()*clockTicks) < machineQuietBusy {
			return time.Since(start), nil
		}
		b0, at = b1, now
	}
	return time.Since(start), err
}
