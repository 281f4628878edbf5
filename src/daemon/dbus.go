//go:build !nodbus

package daemon

import (
	"log/slog"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/dbusapi"
)

// BuiltWithDBus says whether this build has the D-Bus interface (build tag
// nodbus leaves it out).
const BuiltWithDBus = true

var _ dbusapi.Backend = busBackend{}

// newBus returns the D-Bus service option dbus asks for, or nil when it is
// off. It does not connect: Run does.
func newBus(cfg *config.Config, b busBackend, log *slog.Logger) busService {
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
