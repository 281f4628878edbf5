//go:build nodbus

package daemon

import (
	"context"
	"errors"
	"log/slog"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
)

// BuiltWithDBus says whether this build has the D-Bus interface (build tag
// nodbus leaves it out).
const BuiltWithDBus = false

// ErrNoDBus is returned (wrapped) by Run when option dbus is '1' in a build
// without D-Bus.
var ErrNoDBus = errors.New("dpfd was built without D-Bus (build tag nodbus): set option dbus '0' or 'auto', or use a build without that tag")

// newBus returns, in a build without D-Bus: nil when option dbus is off or
// 'auto' (logging once that the interface is absent), and for '1' a
// service whose Connect fails with ErrNoDBus, so that the daemon does not
// start without the interface it was told to require.
func newBus(cfg *config.Config, _ busBackend, log *slog.Logger) busService {
	switch cfg.DBus {
	case config.DBusOff:
		return nil
	case config.DBusOn:
		return noBus{}
	}
	log.Info("built without D-Bus (build tag nodbus): option dbus 'auto' has no effect; ubus (rpcd) and the control socket remain")
	return nil
}

// noBus is the service of option dbus '1' in a build without D-Bus: it
// cannot connect, and the rest does nothing.
type noBus struct{}

func (noBus) Connect(context.Context) error           { return ErrNoDBus }
func (noBus) Run(context.Context)                     {}
func (noBus) Close()                                  {}
func (noBus) SetExternalAddress(string)               {}
func (noBus) LeaseAdded(control.Lease, int)           {}
func (noBus) LeaseRemoved(control.Lease, string, int) {}
