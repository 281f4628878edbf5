package daemon

import (
	"errors"
	"log/slog"
	"time"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/dbusapi"
	"github.com/dpf-router/dpf/src/lease"
)

// newBus returns the D-Bus service option dbus asks for, or nil when it is
// off. It does not connect: Run does.
func newBus(cfg *config.Config, b dbusapi.Backend, log *slog.Logger) *dbusapi.Service {
	if cfg.DBus == config.DBusOff {
		return nil
	}
	return dbusapi.New(dbusapi.Config{
		Address:  cfg.DBusAddress,
		Backend:  b,
		Optional: cfg.DBus == config.DBusAuto,
		Logger:   log.With("component", "dbus"),
	})
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

var _ dbusapi.Backend = busBackend{}

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
