package daemon

import (
	"context"
	"errors"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/lease"
)

// busService is the D-Bus service as the daemon drives it. dbus.go
// provides dbusapi's; a build with tag nodbus (nodbus.go) has none, which
// leaves godbus and its reflection out of the binary.
//
// newBus, in either file, returns nil when option dbus is off (or, in a
// nodbus build, 'auto'), never a typed nil pointer.
type busService interface {
	// Connect connects once, for option dbus '1': an error stops the
	// daemon from starting.
	Connect(ctx context.Context) error
	// Run serves (and reconnects) until ctx is done.
	Run(ctx context.Context)
	// Close disconnects; safe to call more than once.
	Close()
	// SetExternalAddress, LeaseAdded and LeaseRemoved queue notices and
	// never block.
	SetExternalAddress(addr string)
	LeaseAdded(l control.Lease, count int)
	LeaseRemoved(l control.Lease, reason string, count int)
}

// leaseChanged is the lease manager's OnChange: it hands creations and
// removals to the D-Bus service, which queues them and never blocks.
// Renewals are not signalled.
func (d *Daemon) leaseChanged(ev lease.Event) {
	switch ev.Kind {
	case lease.Created:
		d.bus.LeaseAdded(leaseView(ev.Lease, time.Now()), ev.Count)
	case lease.Removed:
		d.bus.LeaseRemoved(leaseView(ev.Lease, time.Now()), ev.Reason, ev.Count)
	}
}

// busBackend is the daemon as the D-Bus service sees it.
type busBackend struct{ d *Daemon }

func (b busBackend) Status() control.Status  { return b.d.Status() }
func (b busBackend) Leases() []control.Lease { return b.d.Leases() }

// Delete deletes as the control API does, except that a lease that is not
// there is not an error (D-Bus DeleteLease returns 0).
func (b busBackend) Delete(p control.DeleteParams) ([]control.Lease, error) {
	ls, err := b.d.Delete(p)
	if errors.Is(err, lease.ErrNotFound) {
		return nil, nil
	}
	return ls, err
}
