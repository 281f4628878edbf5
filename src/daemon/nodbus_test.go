//go:build nodbus

package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/lease/leasetest"
)

// runTimeout bounds Run in TestWithoutDBusRequiredFailsStart: it must
// return at once, before serving anything.
const runTimeout = 10 * time.Second

// TestWithoutDBusOption checks what each value of option dbus gives in a
// build without D-Bus: nothing for '0' and 'auto' (which says so in the
// log), and for '1' a service that cannot connect, naming the build tag.
func TestWithoutDBusOption(t *testing.T) {
	if BuiltWithDBus {
		t.Fatal("BuiltWithDBus is true with tag nodbus")
	}
	cfg := config.Default()
	var logged bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logged, nil))

	cfg.DBus = config.DBusOff
	if b := newBus(cfg, busBackend{}, log); b != nil {
		t.Errorf("option dbus '0': service %T, want none", b)
	}
	if logged.Len() != 0 {
		t.Errorf("option dbus '0' logged: %s", logged.String())
	}

	cfg.DBus = config.DBusAuto
	if b := newBus(cfg, busBackend{}, log); b != nil {
		t.Errorf("option dbus 'auto': service %T, want none", b)
	}
	if !strings.Contains(logged.String(), "built without D-Bus (build tag nodbus)") {
		t.Errorf("option dbus 'auto' did not log that D-Bus is left out: %q", logged.String())
	}

	cfg.DBus = config.DBusOn
	b := newBus(cfg, busBackend{}, log)
	if b == nil {
		t.Fatal("option dbus '1': no service, so nothing would stop the start")
	}
	err := b.Connect(context.Background())
	if !errors.Is(err, ErrNoDBus) {
		t.Fatalf("Connect: %v, want ErrNoDBus", err)
	}
	for _, want := range []string{"without D-Bus", "nodbus", "option dbus '0' or 'auto'"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Connect error %q does not say %q", err, want)
		}
	}
}

// TestWithoutDBusRequiredFailsStart runs a daemon configured with option
// dbus '1' in a build without D-Bus: Run must fail at once, saying why,
// and close the firewall and store it was given.
func TestWithoutDBusRequiredFailsStart(t *testing.T) {
	cfg := config.Default()
	cfg.DBus = config.DBusOn
	log := slog.New(slog.DiscardHandler)
	fw := &closeCounter{fakeFirewall: fakeFirewall{leasetest.NewFirewall()}}
	d := &Daemon{log: log, clk: clock.Real{}, started: time.Now(), cfg: cfg, fw: fw}
	d.bus = newBus(cfg, busBackend{d}, log)

	ctx, cancel := context.WithTimeout(context.Background(), runTimeout)
	defer cancel()
	err := d.Run(ctx)
	if !errors.Is(err, ErrNoDBus) {
		t.Fatalf("Run: %v, want ErrNoDBus", err)
	}
	if !strings.Contains(err.Error(), "option dbus '1'") || !strings.Contains(err.Error(), "nodbus") {
		t.Errorf("Run error %q names neither the option nor the build tag", err)
	}
	if fw.closed != 1 {
		t.Errorf("firewall closed %d times, want 1", fw.closed)
	}
}

// closeCounter counts Close calls on a fake firewall.
type closeCounter struct {
	fakeFirewall
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return nil }
