package lease

import (
	"fmt"
	"time"

	"github.com/dpf-router/dpf/src/clock"
)

// Wall-clock steps.
//
// In memory a lease expires at a monotonic deadline, so setting the clock
// does not shorten or stretch it. Its stored expiry, though, is a wall-clock
// time, and a restart trusts it (bounded by the granted lifetime). A router
// without a real-time clock boots at its build date, restores its leases,
// and then NTP sets the clock years forwards: every stored expiry is now
// years in the past, and the next restart would drop leases that have most
// of their lifetime left. So Run watches for steps of the wall clock and,
// after one, recomputes every lease's wall-clock expiry from its deadline and
// writes them all to the store in one transaction.

// jumpCheckInterval is how often Run compares the wall clock with the
// monotonic clock. A step is written to the store at most this long after
// it happened: short, so that a crash soon after NTP's first sync loses
// little, and long enough that the check costs nothing on a router.
const jumpCheckInterval = 2 * time.Second

// jumpWatch is Run's wall-clock step detector and the timer that paces it.
// Only Run's goroutine uses it.
type jumpWatch struct {
	m     *Manager
	det   *clock.JumpDetector
	timer clock.Timer
}

func (m *Manager) newJumpWatch() *jumpWatch {
	return &jumpWatch{
		m:     m,
		det:   clock.NewJumpDetector(m.clk, clock.DefaultJumpThreshold),
		timer: m.clk.NewTimer(jumpCheckInterval),
	}
}

// C fires when the next check is due.
func (w *jumpWatch) C() <-chan time.Time { return w.timer.C() }

// stop releases the timer.
func (w *jumpWatch) stop() { w.timer.Stop() }

// check re-arms the timer and, if the wall clock was set since the last
// check, rewrites the stored expiries. A failed write is logged; the leases
// stay marked as unwritten, so the next checkpoint writes them.
func (w *jumpWatch) check() {
	w.timer.Stop()
	w.timer = w.m.clk.NewTimer(jumpCheckInterval)
	step, _ := w.det.Check()
	if step == 0 {
		return
	}
	n, err := w.m.rebaseExpiries()
	if err != nil {
		w.m.log.Error("wall clock was set; rewriting lease expiries", "step", step.String(), "err", err)
		return
	}
	w.m.log.Warn("wall clock was set; lease lifetimes kept, stored expiries rewritten",
		"step", step.String(), "leases", n)
}

// rebaseExpiries sets every lease's wall-clock expiry to the current wall
// time plus what is left until its monotonic deadline, and writes them all
// to the store in one transaction. It returns how many it wrote.
func (m *Manager) rebaseExpiries() (int, error) {
	m.opMu.Lock()
	defer m.opMu.Unlock()
	now := m.clk.Now()
	wallNow := clock.Wall(m.clk, now)
	ls := make([]Lease, 0, len(m.byKey))
	m.mu.Lock()
	for _, e := range m.byKey {
		e.Expires = wallNow.Add(time.Duration(e.deadline - m.mono(now)))
		ls = append(ls, e.Lease)
	}
	m.mu.Unlock()
	if len(ls) == 0 {
		return 0, nil
	}
	if err := m.store.PutExpiries(ls); err != nil {
		return 0, fmt.Errorf("writing %d expiries: %w", len(ls), err)
	}
	for _, e := range m.byKey {
		e.stored = storedAs(e.Expires)
	}
	return len(ls), nil
}
