package systest

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/pcp"
)

// clockTestsEnv must be "1" for TestRebootWallClock to run: it sets the
// system clock, so it must run alone (make test runs it in a serial step
// of its own).
const clockTestsEnv = "DPF_CLOCK_TESTS"

// maxWrongClock bounds how long the test leaves the system clock wrong: a
// watchdog sets it right after that even if the test hangs. Each wrong-clock
// phase takes a second or two.
const maxWrongClock = 20 * time.Second

// rebootGranted is the lifetime the test's mappings are granted.
const rebootGranted = 3600

// rebootSlack absorbs rounding (the lease list shows whole seconds, the
// store milliseconds) and the time between reading a lifetime and acting.
const rebootSlack = 3

// TestRebootWallClock simulates reboots of a router without a real-time
// clock, with each backend: dpfd is stopped (SIGTERM, once SIGKILL), all
// netfilter state is flushed, and the system clock is set.
//
//   - Far backwards (2001-01-01, a router booting at its build date): the
//     leases are restored with no more than their granted lifetime and no
//     less than what was left minus the downtime, the pinholes work and the
//     epoch does not go back. Then the clock jumps to the true time while
//     dpfd runs (NTP): the leases keep their remaining lifetime, and after
//     a crash and a restart at the true time they are restored with it.
//   - Forwards by 30 minutes: the leases come back with 30 minutes less;
//     setting the clock right again while dpfd runs does not give them
//     those 30 minutes back.
//   - Forwards by a year: every lease is dropped as expired, no pinhole
//     remains, the epoch starts again at 0, and a new mapping works (and
//     survives a restart once the clock is right).
//
// It really sets CLOCK_REALTIME (the test machine has no NTP daemon), for
// a second or two at a time, and always sets it back: to the wall time at
// the start plus the monotonic time elapsed since.
func TestRebootWallClock(t *testing.T) {
	if os.Getenv(clockTestsEnv) != "1" {
		t.Skipf("sets the system clock, so it runs alone: set %s=1 (make test runs it in a serial step)", clockTestsEnv)
	}
	needTools(t)
	wc := newWallClock(t)
	for _, be := range backends {
		t.Run(be, func(t *testing.T) { rebootTest(t, be, wc) })
	}
}

func rebootTest(t *testing.T, backend string, wc *wallClock) {
	r := newRouter(t, backend, 1)
	// Checkpoint every second, so that expiries read on a wrong clock
	// reach the store while the clock is wrong, as they would on a router
	// that runs a while before NTP syncs.
	r.writeConfig("\toption checkpoint_interval '1'\n")
	r.start()
	r.echoServers(0, 8080)
	r.echoServers(0, 9053)
	tcp, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", strconv.Itoa(rebootGranted))
	if err != nil {
		t.Fatal(err)
	}
	m := pcp.Request{Version: pcp.Version, Op: pcp.OpMap, Lifetime: rebootGranted, ClientAddr: lab.LANHost(0),
		Map: pcp.MapData{Protocol: 17, InternalPort: 9053, ExternalPort: 9053}}
	copy(m.Map.Nonce[:], "reboot-nonce")
	reply, err := r.ask(m.AppendTo(nil), 3*time.Second)
	if err != nil || reply == nil {
		t.Fatalf("no reply to PCP MAP: %v", err)
	}
	resp, err := pcp.ParseResponse(reply)
	if err != nil || resp.Result != pcp.ResultSuccess {
		t.Fatalf("PCP MAP: %+v %v", resp, err)
	}
	udp := resp.Map.ExternalPort
	keys := []string{"tcp/" + strconv.Itoa(int(tcp)), "udp/" + strconv.Itoa(int(udp))}
	reachAll := func(when string) {
		t.Helper()
		for _, k := range []struct {
			proto string
			port  uint16
		}{{"tcp", tcp}, {"udp", udp}} {
			if err := r.reach(k.proto, lab.Inet, k.port); err != nil {
				t.Fatalf("%s: %s/%d not reachable: %v", when, k.proto, k.port, err)
			}
		}
	}
	time.Sleep(1100 * time.Millisecond) // let the epoch reach 1
	reachAll("before any reboot")

	// (i) The clock far backwards, then right again while dpfd runs.
	left := rebootLeft(t, r, keys)
	epoch := r.epoch(t)
	down := r.reboot(syscall.SIGTERM, func() { wc.set(time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC)) })
	restoredAt := time.Now()
	restored := rebootLeft(t, r, keys)
	for _, k := range keys {
		if restored[k] > rebootGranted || restored[k] < left[k]-down-rebootSlack {
			t.Errorf("clock in 2001: %s restored with %d s left; had %d s, down %d s, granted %d s", k, restored[k], left[k], down, rebootGranted)
		}
	}
	if e := r.epoch(t); e < epoch {
		t.Errorf("clock in 2001: epoch went back from %d to %d with restored state", epoch, e)
	}
	t.Logf("clock in 2001: had %v, down %d s, restored with %v", left, down, restored)
	reachAll("clock in 2001")
	checkKernelExactly(t, r, controlMappings(r))
	wc.restore() // NTP syncs: 25 years forwards
	// dpfd notices the step within seconds and rewrites the stored
	// expiries; until then the lease list (wall clock) shows 0 s left.
	synced := rebootWaitLeft(t, r, keys, func(k string, s int64) bool {
		return s >= restored[k]-int64(time.Since(restoredAt)/time.Second)-rebootSlack
	})
	for _, k := range keys {
		if synced[k] > restored[k] {
			t.Errorf("after the clock jumped forwards: %s has %d s left, more than the %d s it was restored with", k, synced[k], restored[k])
		}
	}
	t.Logf("clock jumped forwards: %v left", synced)
	reachAll("after the clock jumped forwards")
	left = synced
	epoch = r.epoch(t)
	down = r.reboot(syscall.SIGKILL, nil)
	restored = rebootLeft(t, r, keys)
	for _, k := range keys {
		if restored[k] > left[k]+rebootSlack || restored[k] < left[k]-down-rebootSlack {
			t.Errorf("crash and restart at the true time: %s restored with %d s left; had %d s, down %d s", k, restored[k], left[k], down)
		}
	}
	if e := r.epoch(t); e < epoch || int64(e) > int64(epoch)+down+rebootSlack+10 {
		t.Errorf("crash and restart at the true time: epoch %d, was %d before %d s down", e, epoch, down)
	}
	t.Logf("crash, restart at the true time: had %v, down %d s, restored with %v", left, down, restored)
	reachAll("restart at the true time")
	checkKernelExactly(t, r, controlMappings(r))

	// (ii) Thirty minutes forwards: thirty minutes less.
	const forwards = 30 * 60
	left = rebootLeft(t, r, keys)
	epoch = r.epoch(t)
	down = r.reboot(syscall.SIGTERM, func() { wc.set(wc.now().Add(forwards * time.Second)) })
	restoredAt = time.Now()
	restored = rebootLeft(t, r, keys)
	for _, k := range keys {
		if restored[k] > left[k]-forwards+rebootSlack || restored[k] < left[k]-forwards-down-rebootSlack {
			t.Errorf("clock 30 min ahead: %s restored with %d s left; had %d s, down %d s", k, restored[k], left[k], down)
		}
	}
	if e := r.epoch(t); e < epoch {
		t.Errorf("clock 30 min ahead: epoch went back from %d to %d with restored state", epoch, e)
	}
	t.Logf("clock 30 min ahead: had %v, down %d s, restored with %v", left, down, restored)
	reachAll("clock 30 min ahead")
	wc.restore() // 30 minutes backwards while dpfd runs
	// Until dpfd notices, the list shows 30 minutes more than is left.
	synced = rebootWaitLeft(t, r, keys, func(k string, s int64) bool { return s <= restored[k]+rebootSlack })
	for _, k := range keys {
		if synced[k] < restored[k]-int64(time.Since(restoredAt)/time.Second)-rebootSlack {
			t.Errorf("after the clock was set back: %s has %d s left, restored with %d s", k, synced[k], restored[k])
		}
	}
	t.Logf("clock set back 30 min: %v left", synced)
	reachAll("after the clock was set back")

	// (iii) A year forwards: everything expired, the epoch starts again.
	down = r.reboot(syscall.SIGTERM, func() { wc.set(wc.now().Add(365 * 24 * time.Hour)) })
	startedAt := time.Now()
	if ls := r.leases(); len(ls) != 0 {
		t.Errorf("clock a year ahead: leases kept: %+v", ls)
	}
	if ms, bad := kernelMappings(t, r, true); len(ms) != 0 || len(bad) != 0 {
		t.Errorf("clock a year ahead: pinholes %v, problems %v", ms, bad)
	}
	if e := r.epoch(t); int64(e) > int64(time.Since(startedAt)/time.Second)+1 {
		t.Errorf("clock a year ahead, nothing restored: epoch %d, want it started again at 0", e)
	}
	r.mustNotReach("tcp", tcp)
	r.mustNotReach("udp", udp)
	again, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", strconv.Itoa(rebootGranted))
	if err != nil {
		t.Fatal(err)
	}
	r.mustReach("tcp", again)
	wc.restore() // a year backwards while dpfd runs
	key := []string{"tcp/" + strconv.Itoa(int(again))}
	rebootWaitLeft(t, r, key, func(_ string, s int64) bool { return s <= rebootGranted })
	epoch = r.epoch(t)
	down = r.reboot(syscall.SIGTERM, nil)
	if got := rebootLeft(t, r, key)[key[0]]; got > rebootGranted || got < rebootGranted-down-10 {
		t.Errorf("new mapping after a restart at the true time: %d s left of %d", got, rebootGranted)
	}
	if e := r.epoch(t); e < epoch {
		t.Errorf("restart at the true time: epoch went back from %d to %d", epoch, e)
	}
	r.mustReach("tcp", again)
	checkKernelExactly(t, r, controlMappings(r))
}

// reboot stops dpfd with sig, flushes all netfilter state in the router
// (and conntrack, when the tool is there), calls setClock if not nil, and
// starts dpfd again. It returns the downtime in whole seconds, rounded up.
func (r *router) reboot(sig syscall.Signal, setClock func()) int64 {
	r.t.Helper()
	stopped := time.Now()
	r.kill(sig)
	if r.backend == "iptables" {
		for _, args := range [][]string{{"-t", "nat", "-F"}, {"-t", "nat", "-X"}, {"-F"}, {"-X"}} {
			if out, err := r.lab.Output(20*time.Second, r.lab.Router, "iptables", args...); err != nil {
				r.t.Fatalf("iptables %v: %v\n%s", args, err, out)
			}
		}
	}
	if out, err := r.lab.Output(20*time.Second, r.lab.Router, "nft", "flush", "ruleset"); err != nil {
		r.t.Fatalf("nft flush ruleset: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("conntrack"); err == nil {
		r.lab.Output(20*time.Second, r.lab.Router, "conntrack", "-F") // an empty table is an error
	}
	if ms, _ := kernelMappings(r.t, r, false); len(ms) != 0 {
		r.t.Fatalf("pinholes left after flushing netfilter: %v", ms)
	}
	if setClock != nil {
		setClock()
	}
	r.start()
	return int64((time.Since(stopped) + time.Second - 1) / time.Second)
}

// rebootLeft returns the seconds left of the leases named by keys
// ("tcp/8080"), failing the test if one is missing.
func rebootLeft(t *testing.T, r *router, keys []string) map[string]int64 {
	t.Helper()
	out := make(map[string]int64)
	for _, l := range r.leases() {
		out[l.Proto+"/"+strconv.Itoa(int(l.ExternalPort))] = l.ExpiresIn
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			t.Fatalf("lease %s missing; leases: %v", k, out)
		}
	}
	return out
}

// rebootWaitLeft polls the leases (bounded) until ok holds for every one
// named by keys, and returns their seconds left.
func rebootWaitLeft(t *testing.T, r *router, keys []string, ok func(key string, left int64) bool) map[string]int64 {
	t.Helper()
	// dpfd checks for a step every 2 s; this is ample on a loaded machine.
	deadline := time.Now().Add(15 * time.Second)
	for {
		left := rebootLeft(t, r, keys)
		all := true
		for _, k := range keys {
			all = all && ok(k, left[k])
		}
		if all {
			return left
		}
		if time.Now().After(deadline) {
			t.Fatalf("lifetimes left after the clock was set: %v (dpfd did not rewrite the expiries)", left)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wallClock sets the system clock and sets it right again. It records the
// wall and monotonic clocks at the start (time.Now reads both); the true
// time later is the recorded wall time plus the monotonic time elapsed.
type wallClock struct {
	t     *testing.T
	start time.Time // with its monotonic reading

	mu       sync.Mutex
	watchdog *time.Timer // set while the clock is wrong; guarded by mu
}

// newWallClock records the clocks and makes sure the clock is set right
// when the test ends, however it ends.
func newWallClock(t *testing.T) *wallClock {
	w := &wallClock{t: t, start: time.Now()}
	t.Cleanup(w.restore)
	return w
}

// now is the true time: the wall time at the start plus the monotonic time
// elapsed since.
func (w *wallClock) now() time.Time {
	return w.start.Round(0).Add(time.Since(w.start))
}

// set sets the system clock to at, and arms a watchdog that sets it right
// after maxWrongClock should the test not do it first.
func (w *wallClock) set(at time.Time) {
	w.t.Helper()
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := settime(at); err != nil {
		w.t.Fatalf("setting the clock to %v: %v", at, err)
	}
	if w.watchdog == nil {
		// time.AfterFunc runs on the monotonic clock.
		w.watchdog = time.AfterFunc(maxWrongClock, w.restore)
	}
}

// restore sets the system clock to the true time. It is safe to call more
// than once and from the watchdog.
func (w *wallClock) restore() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.watchdog != nil {
		w.watchdog.Stop()
		w.watchdog = nil
	}
	if err := settime(w.now()); err != nil {
		// Not Fatal: this may run on the watchdog's goroutine.
		fmt.Fprintf(os.Stderr, "TestRebootWallClock: setting the clock back to %v failed: %v\n", w.now(), err)
		w.t.Errorf("setting the clock back: %v", err)
	}
}

func settime(at time.Time) error {
	ts := unix.NsecToTimespec(at.UnixNano())
	return unix.ClockSettime(unix.CLOCK_REALTIME, &ts)
}
