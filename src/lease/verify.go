package lease

import (
	"errors"
	"fmt"

	"github.com/dpf-router/dpf/src/firewall"
)

// ErrCannotVerify is returned by VerifyFirewall when the firewall is not a
// firewall.Verifier.
var ErrCannotVerify = errors.New("firewall cannot be verified")

// Verification is what VerifyFirewall found and did.
type Verification struct {
	// Read is true when the kernel's state was read and compared (the
	// cheap check could not vouch for it), which costs time in
	// proportion to the pinholes; false when nothing had changed.
	Read bool
	// Drift is what differed; when it is not clean and VerifyFirewall
	// returned no error, the firewall has been re-synced.
	Drift firewall.Drift
}

// VerifyFirewall checks that the firewall still holds every lease's pinhole
// and nothing else, with dpfd's tables, chains and hooks, and re-syncs it
// when not: the repair after someone flushed the ruleset, deleted dpfd's
// table or reloaded the system firewall.
//
// It is cheap when nothing changed (the backend's Unchanged check, one
// netlink round trip with nftables), so it can run every second; only
// otherwise does it read the kernel's state. Like SyncFirewall it holds the
// change lock throughout, so no lease changes meanwhile. When the re-sync
// fails, Run retries it as after any failed firewall change.
func (m *Manager) VerifyFirewall() (Verification, error) {
	v, ok := m.fw.(firewall.Verifier)
	if !ok {
		return Verification{}, ErrCannotVerify
	}
	m.opMu.Lock()
	defer m.opMu.Unlock()
	if !m.fwDirty && v.Unchanged(len(m.byKey)) {
		return Verification{}, nil
	}
	ps := m.Pinholes()
	d, err := v.Verify(ps)
	res := Verification{Read: true, Drift: d}
	if err != nil {
		return res, fmt.Errorf("verifying firewall: %w", err)
	}
	if d.Clean() {
		m.fwDirty = false
		return res, nil
	}
	if err := m.fw.Sync(ps); err != nil {
		m.fwDirty = true
		m.kick()
		return res, fmt.Errorf("re-syncing firewall after %v: %w", d, err)
	}
	m.fwDirty = false
	return res, nil
}
