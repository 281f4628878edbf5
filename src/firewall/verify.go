package firewall

// Self-healing: both backends can tell whether someone else changed their
// part of the kernel's state (a `nft flush ruleset`, a firewall reload that
// starts with one, `iptables -t nat -F`, a deleted table) and what is
// missing, so that the caller can re-Sync. Two optional capabilities, which
// both backends of this package implement:
//
//   - Verifier: Unchanged is the cheap periodic check (one netlink round
//     trip for the ruleset generation id where nftables is in use, two
//     getsockopt calls on iptables-legacy), Verify the full comparison
//     with what must exist.
//   - Watchable: a subscription to the kernel's nftables change
//     notifications (also carrying iptables-nft's changes), so that a
//     flush is noticed at once rather than at the next periodic check.
//     iptables-legacy has no notifications; there, periodic Verify calls
//     are the only way.

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// Drift is how the kernel's state differs from what must be installed.
// The zero Drift means none.
type Drift struct {
	// Structure describes missing or altered tables, chains, hooks,
	// jumps and rules of dpfd's own, in words ("table ip dpf missing").
	Structure []string
	// Missing are pinholes that must be installed but are absent or
	// differ from what they must be.
	Missing []Key
	// Stale are pinholes installed that must not be.
	Stale []Key
	// Duplicated are pinholes whose rules are installed more than once.
	Duplicated []Key
}

// Clean reports whether d records no difference.
func (d Drift) Clean() bool {
	return len(d.Structure) == 0 && len(d.Missing) == 0 && len(d.Stale) == 0 && len(d.Duplicated) == 0
}

// maxListed is how many keys String names per kind before it only counts:
// a flushed ruleset at 10,000 pinholes must not make a 100 kB log line.
const maxListed = 8

// String summarises d for a log line.
func (d Drift) String() string {
	if d.Clean() {
		return "no drift"
	}
	var parts []string
	parts = append(parts, d.Structure...)
	keys := func(what string, ks []Key) {
		if len(ks) == 0 {
			return
		}
		var names []string
		for i, k := range ks {
			if i == maxListed {
				names = append(names, fmt.Sprintf("and %d more", len(ks)-maxListed))
				break
			}
			names = append(names, k.String())
		}
		parts = append(parts, fmt.Sprintf("%d %s (%s)", len(ks), what, strings.Join(names, ", ")))
	}
	keys("pinholes missing", d.Missing)
	keys("stale pinholes", d.Stale)
	keys("duplicated pinholes", d.Duplicated)
	return strings.Join(parts, "; ")
}

func (k Key) String() string { return fmt.Sprintf("%v/%d", k.Proto, k.ExternalPort) }

// Verifier is implemented by backends that can check the kernel's state
// against what must be installed. Like Backend, its methods are for one
// goroutine at a time, serialised with the Backend's.
type Verifier interface {
	// Unchanged reports, cheaply, that the kernel still holds exactly
	// the n pinholes the backend last installed or verified, with
	// nothing changed by anyone since. false means "not known": call
	// Verify. It never touches the rules. The nftables backend (and the
	// iptables backend on iptables-nft) compare the ruleset generation
	// id, which the kernel increments on every committed change; on
	// iptables-legacy the entry counts and sizes of the nat and filter
	// tables stand in for it, and Unchanged turns false once a minute
	// so that a change they cannot see is found too.
	Unchanged(n int) bool
	// Verify reads the kernel's state and compares it with ps (all the
	// pinholes that must exist) and with dpfd's tables, chains, hooks
	// and jumps. It changes nothing: the caller calls Sync when the
	// Drift is not clean.
	Verify(ps []Pinhole) (Drift, error)
}

// Watchable is implemented by backends whose state the kernel reports
// changes of.
type Watchable interface {
	// NewWatcher subscribes to the kernel's change notifications for
	// the backend's tables. The subscription is in place when it
	// returns, so no later change is missed. It returns an error
	// wrapping ErrUnsupported when the kernel sends none for this
	// backend (iptables-legacy).
	NewWatcher() (Watcher, error)
}

// Watcher delivers change notifications from a subscription.
type Watcher interface {
	// Run calls changed after every committed transaction that touched
	// one of the backend's tables (or may have: after notifications were
	// lost because the reader fell behind) until ctx is done, then
	// returns nil; or it returns the error that stopped it. changed is
	// called on Run's goroutine and must not block. The nftables
	// backend's own changes are reported too (Verifier.Unchanged tells
	// them apart cheaply); the iptables backend leaves out what arrives
	// while a change of its own runs, which its next Verify covers. Run
	// closes the subscription when it returns; call it once.
	Run(ctx context.Context, changed func()) error
	// Close ends the subscription; a running Run returns.
	Close() error
}

// cleanMark remembers the ruleset generation at which the kernel was known
// to hold exactly what the backend last installed, and how many pinholes
// that was. The zero value knows nothing.
type cleanMark struct {
	valid bool
	gen   uint32
	count int
}

func (c cleanMark) matches(gen uint32, count int) bool {
	return c.valid && c.gen == gen && c.count == count
}

// diffKeys compares the pinholes that must exist with those installed
// (both validated) and returns the keys missing or different, and those
// installed but not wanted, each sorted.
func diffKeys(want map[Key]Pinhole, installed []Pinhole) (missing, stale []Key) {
	have := make(map[Key]Pinhole, len(installed))
	for _, p := range installed {
		have[p.Key()] = p
	}
	for k, p := range want {
		if h, ok := have[k]; !ok || !equalPinholes(h, p) {
			missing = append(missing, k)
		}
	}
	for k := range have {
		if _, ok := want[k]; !ok {
			stale = append(stale, k)
		}
	}
	slices.SortFunc(missing, compareKeys)
	slices.SortFunc(stale, compareKeys)
	return missing, stale
}

// sortedKeys returns the keys of want, sorted.
func sortedKeys(want map[Key]Pinhole) []Key {
	ks := make([]Key, 0, len(want))
	for k := range want {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, compareKeys)
	return ks
}
