package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/user"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/dbusapi"
	"github.com/dpf-router/dpf/src/dbusapi/dbustest"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/policy"
	"github.com/dpf-router/dpf/src/server"
)

// fakeFirewall is leasetest's firewall with the rest of firewall.Backend.
type fakeFirewall struct{ *leasetest.Firewall }

var _ firewall.Backend = fakeFirewall{}

func (fakeFirewall) Name() string                           { return "nftables" }
func (fakeFirewall) Init() error                            { return nil }
func (fakeFirewall) Installed() ([]firewall.Pinhole, error) { return nil, nil }
func (fakeFirewall) Cleanup() error                         { return nil }
func (fakeFirewall) Close() error                           { return nil }
func (f fakeFirewall) has(proto firewall.Proto, p uint16) bool {
	_, ok := f.Get(firewall.Key{Proto: proto, ExternalPort: p})
	return ok
}

var lanHost = netip.MustParseAddr("198.51.100.10")

// testDaemon wires a Daemon as New does, with fakes for the firewall and
// the store, and its D-Bus service on a private bus.
func testDaemon(t *testing.T, bus *dbustest.Bus) (*Daemon, fakeFirewall) {
	t.Helper()
	cfg := config.Default()
	cfg.LANInterfaces, cfg.WANInterface = []string{"br-test"}, "wan-test"
	cfg.ExternalAddress = netip.MustParseAddr("203.0.113.1")
	cfg.DBus, cfg.DBusAddress = config.DBusOn, bus.Address
	log := slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
	fw := fakeFirewall{leasetest.NewFirewall()}
	d := &Daemon{log: log, clk: clock.Real{}, started: time.Now(), cfg: cfg, fw: fw,
		lan: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	d.bus = newBus(cfg, busBackend{d}, log)
	d.m = lease.New(lease.Config{Policy: d.policy(), Firewall: fw, Store: leasetest.NewStore(), OnChange: d.leaseChanged})
	d.srv = server.New(server.Config{Manager: d.m, ExternalAddr: d.ExternalAddr})
	d.updateExternal()

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	if err := d.bus.Connect(ctx); err != nil {
		t.Fatal(err)
	}
	go func() { defer close(done); d.bus.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	return d, fw
}

func startBus(t *testing.T) *dbustest.Bus {
	t.Helper()
	opts := dbustest.Options{Policies: []string{dbustest.PolicyFile}}
	if os.Geteuid() != 0 {
		// The current user stands in for root (only root may own the
		// name); deleting needs root, so that test skips.
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		opts.Extra = fmt.Sprintf(`<policy user="%s"><allow own="%s"/><allow send_destination="%s"/></policy>`,
			u.Username, dbusapi.BusName, dbusapi.BusName)
	}
	return dbustest.Start(t, opts)
}

func nextSignal(t *testing.T, ch chan *dbus.Signal, name string) *dbus.Signal {
	t.Helper()
	for {
		select {
		case s := <-ch:
			if s.Name == name {
				return s
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("no %s signal within 10 s", name)
		}
	}
}

// TestDBusWiring: leases made through the manager are signalled with their
// details and the count; DeleteLease over D-Bus removes the lease and its
// pinhole; a deletion of nothing returns 0; the external address property
// follows the daemon's.
func TestDBusWiring(t *testing.T) {
	bus := startBus(t)
	d, fw := testDaemon(t, bus)
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(dbusapi.BusName)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	obj := conn.Object(dbusapi.BusName, dbusapi.Path)

	var v dbus.Variant
	if err := obj.Call("org.freedesktop.DBus.Properties.Get", 0, dbusapi.Interface, "ExternalAddress").Store(&v); err != nil || v.Value() != "203.0.113.1" {
		t.Fatalf("ExternalAddress = %v, %v", v, err)
	}

	l, err := d.m.Map(lease.Request{Origin: lease.OriginNATPMP, Proto: firewall.TCP, Client: lanHost, InternalAddr: lanHost,
		InternalPort: 8080, SuggestedPort: 8080, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	sig := nextSignal(t, ch, dbusapi.Interface+".LeaseAdded")
	got := sig.Body[0].(map[string]dbus.Variant)
	if got["ext_port"].Value() != l.ExternalPort || got["int_addr"].Value() != lanHost.String() || got["origin"].Value() != "natpmp" ||
		got["lifetime"].Value() != uint32(3600) {
		t.Errorf("LeaseAdded %v", got)
	}
	var n uint32
	// The service changes LeaseCount right after it sends LeaseAdded
	// (dbusapi's TestSignalsAndPropertiesChanged holds that order): wait
	// for the change's signal before reading the property.
	nextSignal(t, ch, "org.freedesktop.DBus.Properties.PropertiesChanged")
	if err := obj.Call("org.freedesktop.DBus.Properties.Get", 0, dbusapi.Interface, "LeaseCount").Store(&v); err != nil || v.Value() != uint32(1) {
		t.Errorf("LeaseCount = %v, %v", v, err)
	}

	if os.Geteuid() == 0 {
		if err := obj.Call(dbusapi.Interface+".DeleteLease", 0, "tcp", l.ExternalPort).Store(&n); err != nil || n != 1 {
			t.Fatalf("DeleteLease = %d, %v", n, err)
		}
		sig = nextSignal(t, ch, dbusapi.Interface+".LeaseRemoved")
		if r := sig.Body[0].(map[string]dbus.Variant)["reason"]; r.Value() != "deleted by administrator" {
			t.Errorf("LeaseRemoved reason %v", r)
		}
		if d.m.Len() != 0 || fw.has(firewall.TCP, l.ExternalPort) {
			t.Errorf("after DeleteLease: %d leases, pinhole installed %v", d.m.Len(), fw.has(firewall.TCP, l.ExternalPort))
		}
		if err := obj.Call(dbusapi.Interface+".DeleteLease", 0, "tcp", l.ExternalPort).Store(&n); err != nil || n != 0 {
			t.Errorf("DeleteLease of a deleted lease = %d, %v; want 0, nil", n, err)
		}
	} else {
		t.Log("not root: DeleteLease is root's; not tested here")
	}

	// A removal by the policy is signalled with its reason.
	if _, err := d.m.Map(lease.Request{Origin: lease.OriginNATPMP, Proto: firewall.UDP, Client: lanHost, InternalAddr: lanHost,
		InternalPort: 5353, SuggestedPort: 5353, Lifetime: time.Hour}); err != nil {
		t.Fatal(err)
	}
	d.m.SetPolicy(&policy.Policy{})
	if _, err := d.m.Map(lease.Request{Origin: lease.OriginNATPMP, Proto: firewall.UDP, Client: lanHost, InternalAddr: lanHost,
		InternalPort: 5353, SuggestedPort: 5353, Lifetime: time.Hour}); !errors.Is(err, lease.ErrDenied) {
		t.Fatalf("renewal under an empty policy: %v", err)
	}
	sig = nextSignal(t, ch, dbusapi.Interface+".LeaseRemoved")
	if r := sig.Body[0].(map[string]dbus.Variant)["reason"]; r.Value() != "no longer allowed by policy" {
		t.Errorf("LeaseRemoved reason %v", r)
	}

	d.mu.Lock()
	d.cfg.ExternalAddress = netip.MustParseAddr("203.0.113.2")
	d.mu.Unlock()
	d.updateExternal()
	for {
		sig = nextSignal(t, ch, "org.freedesktop.DBus.Properties.PropertiesChanged")
		if v, ok := sig.Body[1].(map[string]dbus.Variant)["ExternalAddress"]; ok {
			if v.Value() != "203.0.113.2" {
				t.Errorf("ExternalAddress changed to %v", v)
			}
			break
		}
	}
}

func TestBusBackendDeleteMissing(t *testing.T) {
	d := &Daemon{m: lease.New(lease.Config{Firewall: leasetest.NewFirewall(), Store: leasetest.NewStore()})}
	ls, err := busBackend{d}.Delete(control.DeleteParams{Proto: "tcp", ExternalPort: 1})
	if err != nil || len(ls) != 0 {
		t.Errorf("Delete of a missing lease = %v, %v; want none, nil", ls, err)
	}
	if _, err := (busBackend{d}).Delete(control.DeleteParams{Proto: "sctp", ExternalPort: 1}); err == nil {
		t.Error("Delete with a bad protocol succeeded")
	}
}

func TestNewBusFollowsOption(t *testing.T) {
	cfg := config.Default()
	log := slog.New(slog.DiscardHandler)
	for mode, want := range map[string]bool{config.DBusAuto: true, config.DBusOn: true, config.DBusOff: false} {
		cfg.DBus = mode
		if got := newBus(cfg, busBackend{}, log) != nil; got != want {
			t.Errorf("option dbus %s: service %v, want %v", mode, got, want)
		}
	}
}
