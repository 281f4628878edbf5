package daemon

// Self-healing firewall: when someone else removes dpfd's rules (`nft flush
// ruleset`, a firewall reload that starts with one, `iptables -t nat -F`,
// a deleted table), dpfd puts every pinhole back within a second or two,
// without a restart. The lease table is the truth; the kernel's rules are
// derived from it (lease.Manager.VerifyFirewall).
//
// Two triggers: the kernel's nftables change notifications (which carry
// iptables-nft's changes too), for speed; and a check every healInterval,
// for what sends none (iptables-legacy) and for notifications lost.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

const (
	// healInterval is how often the firewall is checked without a
	// notification. When nothing changed the check is one netlink round
	// trip (about 15 µs at 4,000 pinholes; see the firewall package's
	// benchmarks), and a repair within 2 s is the goal.
	healInterval = time.Second
	// healDebounce lets a burst of notifications (a firewall reload is
	// one transaction with nftables but dozens of iptables commands with
	// fw3) end before the check, so that the repair comes once, after
	// it.
	healDebounce = 100 * time.Millisecond
	// healReadGap spaces the reads of the kernel's rules that
	// notifications cause when they turn out to be for nothing (another
	// program's change elsewhere in the tables dpfd watches): a read costs
	// in proportion to the pinholes (about 45 ms of CPU at 4,000 with
	// nftables, 180 ms with iptables), and a busy neighbour must not make
	// dpfd read all the time. A notification within the gap waits for
	// its end, which keeps a repair under 2 s. Reads that found something
	// to repair do not count.
	healReadGap = time.Second
	// healWatchRetry is how long after the notification socket failed
	// it is opened again; the periodic check covers meanwhile.
	healWatchRetry = 5 * time.Second
)

// healStats counts the firewall checks' outcomes for `dpfd status`.
type healStats struct {
	repairs atomic.Uint64 // checks that found something missing and re-synced
}

// heal checks the firewall after every notification and every
// healInterval, and repairs it, until ctx is done. Run owns it.
func (d *Daemon) heal(ctx context.Context) {
	if _, ok := d.fw.(firewall.Verifier); !ok {
		d.log.Warn("firewall backend cannot be verified; changes made by others will not be repaired", "backend", d.fw.Name())
		return
	}
	kick := make(chan struct{}, 1)
	notify := func() {
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	if w, ok := d.fw.(firewall.Watchable); ok {
		wg.Add(1)
		go func() { defer wg.Done(); d.watchFirewall(ctx, w, notify) }()
	}
	t := time.NewTicker(healInterval)
	defer t.Stop()
	// lastWasted is when the last read caused by a notification started
	// that found nothing to repair.
	var lastWasted time.Time
	var failing bool
	for {
		notified := false
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-kick:
			notified = true
			wait := healDebounce
			if gap := healReadGap - time.Since(lastWasted); gap > wait {
				wait = gap
			}
			timer := time.NewTimer(wait)
			select {
			case <-ctx.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
			select { // notifications meanwhile are covered by this check
			case <-kick:
			default:
			}
		}
		start := time.Now()
		v, err := d.m.VerifyFirewall()
		if notified && v.Read && v.Drift.Clean() {
			lastWasted = start
		}
		switch {
		case !v.Drift.Clean() && err == nil:
			d.healStats.repairs.Add(1)
			d.log.Warn("firewall changed outside dpfd; restored "+pinholeCount(len(v.Drift.Missing)),
				"missing", v.Drift.String(), "backend", d.fw.Name(), "took", time.Since(start).Round(time.Millisecond).String())
		case !v.Drift.Clean():
			d.log.Warn("firewall changed outside dpfd; repair failed, retrying", "missing", v.Drift.String(), "err", err)
		}
		switch {
		case err != nil && !failing:
			// Once per failure spell: it is retried every second.
			d.log.Error("checking the firewall", "err", err)
			failing = true
		case err == nil && failing:
			d.log.Info("firewall check works again")
			failing = false
		}
		if errors.Is(err, lease.ErrCannotVerify) {
			return
		}
	}
}

func pinholeCount(n int) string {
	if n == 1 {
		return "1 pinhole"
	}
	return strconv.Itoa(n) + " pinholes"
}

// watchFirewall subscribes to the backend's change notifications and calls
// notify for each until ctx is done, subscribing again after a failure.
func (d *Daemon) watchFirewall(ctx context.Context, w firewall.Watchable, notify func()) {
	for {
		watcher, err := w.NewWatcher()
		if errors.Is(err, firewall.ErrUnsupported) {
			d.log.Info("firewall sends no change notifications; checking it every "+healInterval.String(), "backend", d.fw.Name())
			return
		}
		if err == nil {
			// Something may have changed while there was no
			// subscription.
			notify()
			err = watcher.Run(ctx, notify)
			if err == nil {
				return // ctx is done
			}
		}
		d.log.Warn("following firewall changes; checking it every "+healInterval.String()+" meanwhile", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(healWatchRetry):
		}
	}
}
