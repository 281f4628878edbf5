package dbusapi

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/user"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/dbusapi/dbustest"
	"github.com/dpf-router/dpf/src/internal/testenv"
)

// fakeBackend is a daemon with fixed state that records deletions.
type fakeBackend struct {
	mu      sync.Mutex
	status  control.Status
	leases  []control.Lease
	deletes []control.DeleteParams
	err     error
}

func (f *fakeBackend) Status() control.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.status
}

func (f *fakeBackend) Leases() []control.Lease {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.leases)
}

func (f *fakeBackend) Delete(p control.DeleteParams) ([]control.Lease, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deletes = append(f.deletes, p)
	if f.err != nil {
		return nil, f.err
	}
	var out []control.Lease
	for _, l := range f.leases {
		if p.Client != "" && l.InternalAddr == p.Client || p.Client == "" && l.Proto == p.Proto && l.ExternalPort == p.ExternalPort {
			out = append(out, l)
		}
	}
	return out, nil
}

func (f *fakeBackend) deleted() []control.DeleteParams {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.deletes)
}

var (
	t0     = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	lease1 = control.Lease{Proto: "tcp", ExternalPort: 8080, InternalAddr: "198.51.100.10", InternalPort: 8080,
		Client: "198.51.100.10", Origin: "natpmp", Lifetime: 3600, Created: t0, Expires: t0.Add(time.Hour), ExpiresIn: 3599}
	lease2 = control.Lease{Proto: "udp", ExternalPort: 9053, InternalAddr: "198.51.100.11", InternalPort: 53,
		Client: "198.51.100.11", Origin: "pcp", Description: "dns", Filters: []string{"203.0.113.0/24 port 53"},
		Lifetime: 120, Created: t0, Expires: t0.Add(2 * time.Minute), ExpiresIn: 100}
)

func newFake() *fakeBackend {
	return &fakeBackend{
		status: control.Status{Version: "test", Backend: "nftables", WANInterface: "wan0", ExternalAddress: "203.0.113.1",
			LANInterfaces: []string{"br-lan"}, LANSubnets: []string{"198.51.100.0/24"}, Leases: 2, MaxLeases: 4096,
			Epoch: 7, Uptime: 1.5, DB: "/tmp/leases.db", Counters: map[string]uint64{"created": 2}},
		leases: []control.Lease{lease1, lease2},
	}
}

// startBus starts a private system-like bus with DPF's policy. As root that
// is all; otherwise the current user stands in for root.
func startBus(t *testing.T) *dbustest.Bus {
	t.Helper()
	opts := dbustest.Options{Policies: []string{dbustest.PolicyFile}}
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		opts.Extra = fmt.Sprintf(`<policy user="%s"><allow own="%s"/><allow send_destination="%s"/></policy>`, u.Username, BusName, BusName)
	}
	return dbustest.Start(t, opts)
}

// isTestAdmin is root, or the current user standing in for it.
func isTestAdmin(uid uint32) bool { return uid == uint32(os.Geteuid()) }

// runService runs a Service on bus until the test ends.
func runService(t *testing.T, bus *dbustest.Bus, b Backend, mod func(*Config)) *Service {
	t.Helper()
	cfg := Config{Address: bus.Address, Backend: b, IsAdmin: isTestAdmin, Logger: testLogger(t)}
	if mod != nil {
		mod(&cfg)
	}
	s := New(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	return s
}

// client connects to bus and waits (bounded) until BusName has an owner.
func client(t *testing.T, bus *dbustest.Bus) *dbus.Conn {
	t.Helper()
	conn, err := dbus.Connect(bus.Address)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	waitOwner(t, conn, true)
	return conn
}

func waitOwner(t *testing.T, conn *dbus.Conn, want bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		var has bool
		err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, BusName).Store(&has)
		if err == nil && has == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s owned = %v (err %v), want %v", BusName, has, err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func call(conn *dbus.Conn, method string, out any, args ...any) error {
	c := conn.Object(BusName, Path).Call(method, 0, args...)
	if c.Err != nil || out == nil {
		return c.Err
	}
	return c.Store(out)
}

func errName(err error) string {
	var de dbus.Error
	if errors.As(err, &de) {
		return de.Name
	}
	return fmt.Sprintf("not a D-Bus error: %v", err)
}

// signals subscribes conn to everything the Service emits.
func signals(t *testing.T, conn *dbus.Conn) chan *dbus.Signal {
	t.Helper()
	if err := conn.AddMatchSignal(dbus.WithMatchSender(BusName), dbus.WithMatchObjectPath(Path)); err != nil {
		t.Fatal(err)
	}
	ch := make(chan *dbus.Signal, 64)
	conn.Signal(ch)
	return ch
}

func nextSignal(t *testing.T, ch chan *dbus.Signal) *dbus.Signal {
	t.Helper()
	select {
	case s := <-ch:
		return s
	case <-time.After(10 * time.Second):
		t.Fatal("no signal within 10 s")
		return nil
	}
}

func TestMethodsAndProperties(t *testing.T) {
	bus := startBus(t)
	fb := newFake()
	runService(t, bus, fb, nil)
	conn := client(t, bus)

	var st map[string]dbus.Variant
	if err := call(conn, Interface+".Status", &st); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{"version": "test", "backend": "nftables", "external_address": "203.0.113.1",
		"leases": uint32(2), "max_leases": uint32(4096), "epoch": uint32(7), "uptime_seconds": 1.5,
		"lan_interfaces": []string{"br-lan"}, "listening": []string{}, "counters": map[string]uint64{"created": 2}} {
		if got := st[k].Value(); !reflect.DeepEqual(got, want) {
			t.Errorf("Status[%s] = %#v, want %#v", k, got, want)
		}
	}

	var ls []map[string]dbus.Variant
	if err := call(conn, Interface+".ListLeases", &ls); err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 {
		t.Fatalf("ListLeases: %d leases", len(ls))
	}
	for k, want := range map[string]any{"proto": "udp", "ext_port": uint16(9053), "int_addr": "198.51.100.11", "int_port": uint16(53),
		"client": "198.51.100.11", "origin": "pcp", "description": "dns", "filters": []string{"203.0.113.0/24 port 53"},
		"lifetime": uint32(120), "created": t0.Unix(), "expires": t0.Add(2 * time.Minute).Unix(), "expires_in": uint32(100)} {
		if got := ls[1][k].Value(); !reflect.DeepEqual(got, want) {
			t.Errorf("lease[%s] = %#v, want %#v", k, got, want)
		}
	}
	if _, ok := ls[0]["reason"]; ok {
		t.Error("a listed lease has a reason")
	}

	var props map[string]dbus.Variant
	if err := call(conn, "org.freedesktop.DBus.Properties.GetAll", &props, Interface); err != nil {
		t.Fatal(err)
	}
	want := map[string]dbus.Variant{"ExternalAddress": dbus.MakeVariant("203.0.113.1"),
		"LeaseCount": dbus.MakeVariant(uint32(2)), "Backend": dbus.MakeVariant("nftables")}
	if !reflect.DeepEqual(props, want) {
		t.Errorf("GetAll = %v, want %v", props, want)
	}
	if err := call(conn, "org.freedesktop.DBus.Properties.Set", nil, Interface, "LeaseCount", dbus.MakeVariant(uint32(9))); err == nil {
		t.Error("Set LeaseCount succeeded; properties are read-only")
	}

	var n uint32
	if err := call(conn, Interface+".DeleteLease", &n, "TCP", uint16(8080)); err != nil || n != 1 {
		t.Errorf("DeleteLease(TCP, 8080) = %d, %v", n, err)
	}
	if err := call(conn, Interface+".DeleteLease", &n, "tcp", uint16(1)); err != nil || n != 0 {
		t.Errorf("DeleteLease(tcp, 1) = %d, %v; want 0, nil", n, err)
	}
	if err := call(conn, Interface+".DeleteClient", &n, "198.51.100.11"); err != nil || n != 1 {
		t.Errorf("DeleteClient = %d, %v", n, err)
	}
	wantDeletes := []control.DeleteParams{{Proto: "tcp", ExternalPort: 8080}, {Proto: "tcp", ExternalPort: 1}, {Client: "198.51.100.11"}}
	if got := fb.deleted(); !reflect.DeepEqual(got, wantDeletes) {
		t.Errorf("backend deletions %+v, want %+v", got, wantDeletes)
	}
	for _, tc := range []struct {
		method string
		args   []any
		want   string
	}{
		{"DeleteLease", []any{"icmp", uint16(1)}, errInvalidArgs},
		{"DeleteLease", []any{"udp", uint16(0)}, errInvalidArgs},
		{"DeleteClient", []any{"host.example"}, errInvalidArgs},
		{"NoSuchMethod", nil, "org.freedesktop.DBus.Error.UnknownMethod"},
	} {
		err := call(conn, Interface+"."+tc.method, nil, tc.args...)
		if errName(err) != tc.want {
			t.Errorf("%s%v: error %v, want %s", tc.method, tc.args, err, tc.want)
		}
	}
	fb.mu.Lock()
	fb.err = errors.New("store broken")
	fb.mu.Unlock()
	if err := call(conn, Interface+".DeleteLease", nil, "tcp", uint16(8080)); errName(err) != errFailed || !strings.Contains(err.Error(), "store broken") {
		t.Errorf("DeleteLease with a failing backend: %v", err)
	}
}

func TestSignalsAndPropertiesChanged(t *testing.T) {
	bus := startBus(t)
	s := runService(t, bus, newFake(), nil)
	conn := client(t, bus)
	ch := signals(t, conn)

	s.LeaseAdded(lease1, 3)
	sig := nextSignal(t, ch)
	if sig.Name != Interface+".LeaseAdded" || len(sig.Body) != 1 {
		t.Fatalf("first signal %s %v, want LeaseAdded", sig.Name, sig.Body)
	}
	d := sig.Body[0].(map[string]dbus.Variant)
	if d["ext_port"].Value() != uint16(8080) || d["proto"].Value() != "tcp" {
		t.Errorf("LeaseAdded %v", d)
	}
	checkChanged(t, nextSignal(t, ch), "LeaseCount", uint32(3))

	s.LeaseRemoved(lease1, "deleted by administrator", 2)
	sig = nextSignal(t, ch)
	if sig.Name != Interface+".LeaseRemoved" {
		t.Fatalf("signal %s, want LeaseRemoved", sig.Name)
	}
	d = sig.Body[0].(map[string]dbus.Variant)
	if d["reason"].Value() != "deleted by administrator" || d["ext_port"].Value() != uint16(8080) {
		t.Errorf("LeaseRemoved %v", d)
	}
	checkChanged(t, nextSignal(t, ch), "LeaseCount", uint32(2))

	s.SetExternalAddress("203.0.113.2")
	checkChanged(t, nextSignal(t, ch), "ExternalAddress", "203.0.113.2")
	// The same value again changes nothing, so the next signal is the
	// LeaseAdded below.
	s.SetExternalAddress("203.0.113.2")
	s.LeaseAdded(lease2, 3)
	if sig := nextSignal(t, ch); sig.Name != Interface+".LeaseAdded" {
		t.Errorf("signal %s %v, want LeaseAdded", sig.Name, sig.Body)
	}
	var v dbus.Variant
	if err := call(conn, "org.freedesktop.DBus.Properties.Get", &v, Interface, "ExternalAddress"); err != nil || v.Value() != "203.0.113.2" {
		t.Errorf("Get ExternalAddress = %v, %v", v, err)
	}
}

func checkChanged(t *testing.T, sig *dbus.Signal, name string, want any) {
	t.Helper()
	if sig.Name != "org.freedesktop.DBus.Properties.PropertiesChanged" || len(sig.Body) != 3 || sig.Body[0] != Interface {
		t.Fatalf("signal %s %v, want PropertiesChanged of %s", sig.Name, sig.Body, Interface)
	}
	changed := sig.Body[1].(map[string]dbus.Variant)
	if v, ok := changed[name]; !ok || v.Value() != want {
		t.Errorf("PropertiesChanged %v, want %s = %v", changed, name, want)
	}
}

func TestIntrospection(t *testing.T) {
	bus := startBus(t)
	runService(t, bus, newFake(), nil)
	conn := client(t, bus)

	var x string
	if err := conn.Object(BusName, Path).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&x); err != nil {
		t.Fatal(err)
	}
	var node introspect.Node
	if err := xml.Unmarshal([]byte(x), &node); err != nil {
		t.Fatalf("introspection XML: %v\n%s", err, x)
	}
	var names []string
	var ours *introspect.Interface
	for i, in := range node.Interfaces {
		names = append(names, in.Name)
		if in.Name == Interface {
			ours = &node.Interfaces[i]
		}
	}
	for _, want := range []string{Interface, "org.freedesktop.DBus.Properties", "org.freedesktop.DBus.Introspectable", "org.freedesktop.DBus.Peer"} {
		if !slices.Contains(names, want) {
			t.Errorf("introspection lacks %s: %v", want, names)
		}
	}
	if ours == nil {
		t.Fatal(x)
	}
	var got []string
	for _, m := range ours.Methods {
		got = append(got, m.Name)
	}
	for _, s := range ours.Signals {
		got = append(got, "signal "+s.Name)
	}
	for _, p := range ours.Properties {
		got = append(got, fmt.Sprintf("property %s %s %s", p.Name, p.Type, p.Access))
	}
	want := []string{"Status", "ListLeases", "DeleteLease", "DeleteClient", "signal LeaseAdded", "signal LeaseRemoved",
		"property Backend s read", "property ExternalAddress s read", "property LeaseCount u read"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("introspected\n%q\nwant\n%q", got, want)
	}

	// The tree from / leads to the object.
	path := dbus.ObjectPath("/")
	for _, child := range []string{"org", "dpf", "Router"} {
		if err := conn.Object(BusName, path).Call("org.freedesktop.DBus.Introspectable.Introspect", 0).Store(&x); err != nil {
			t.Fatalf("Introspect %s: %v", path, err)
		}
		if !strings.Contains(x, `<node name="`+child+`"`) {
			t.Fatalf("introspection of %s does not list %s:\n%s", path, child, x)
		}
		path = dbus.ObjectPath(strings.TrimSuffix(string(path), "/") + "/" + child)
	}
}

// TestIntrospectionMatchesMethods: the hand-written method signatures (they
// carry argument names) are those godbus derives from the Go methods.
func TestIntrospectionMatchesMethods(t *testing.T) {
	sig := func(args []introspect.Arg) string {
		var s []string
		for _, a := range args {
			s = append(s, a.Direction+" "+a.Type)
		}
		return strings.Join(s, ", ")
	}
	derived := map[string]string{}
	for _, m := range introspect.Methods(&object{}) {
		derived[m.Name] = sig(m.Args)
	}
	written := map[string]string{}
	for _, m := range interfaceData().Methods {
		written[m.Name] = sig(m.Args)
	}
	if !reflect.DeepEqual(derived, written) {
		t.Errorf("methods:\n derived %v\n written %v", derived, written)
	}
	for _, sg := range interfaceData().Signals {
		if d := leaseDict(lease1, "r"); sg.Args[0].Type != dbus.SignatureOf(d).String() {
			t.Errorf("signal %s: type %s, sent %s", sg.Name, sg.Args[0].Type, dbus.SignatureOf(d))
		}
	}
}

// TestAdminCheck: the Service refuses deletions from a uid IsAdmin rejects,
// even where the bus policy lets the call through.
func TestAdminCheck(t *testing.T) {
	bus := startBus(t)
	fb := newFake()
	runService(t, bus, fb, func(c *Config) { c.IsAdmin = func(uint32) bool { return false } })
	conn := client(t, bus)
	if err := call(conn, Interface+".DeleteLease", nil, "tcp", uint16(8080)); errName(err) != errAccessDenied {
		t.Errorf("DeleteLease by a non-admin: %v, want AccessDenied", err)
	}
	if err := call(conn, Interface+".DeleteClient", nil, "198.51.100.10"); errName(err) != errAccessDenied {
		t.Errorf("DeleteClient by a non-admin: %v, want AccessDenied", err)
	}
	if got := fb.deleted(); len(got) != 0 {
		t.Errorf("backend deleted %+v", got)
	}
	if err := call(conn, Interface+".ListLeases", nil); err != nil {
		t.Errorf("ListLeases by a non-admin: %v", err)
	}
}

// TestPolicyFile: with the shipped policy, a user other than root may read
// but not delete, nor own the name. The callers are dbus-send run as nobody.
func TestPolicyFile(t *testing.T) {
	testenv.RequireRoot(t)
	for _, tool := range []string{"dbus-send", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed: %v", tool, err)
		}
	}
	bus := startBus(t)
	fb := newFake()
	// The Service would refuse nobody too; accept everyone so that only
	// the bus policy stands in the way.
	runService(t, bus, fb, func(c *Config) { c.IsAdmin = func(uint32) bool { return true } })
	client(t, bus)

	asNobody := func(args ...string) (string, error) {
		cmd := exec.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups",
			"dbus-send", "--bus=" + bus.Address, "--print-reply", "--reply-timeout=5000"}, args...)...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dest := "--dest=" + BusName
	for _, read := range [][]string{
		{dest, string(Path), Interface + ".ListLeases"},
		{dest, string(Path), Interface + ".Status"},
		{dest, string(Path), "org.freedesktop.DBus.Properties.Get", "string:" + Interface, "string:LeaseCount"},
		{dest, string(Path), "org.freedesktop.DBus.Properties.GetAll", "string:" + Interface},
		{dest, string(Path), "org.freedesktop.DBus.Introspectable.Introspect"},
	} {
		if out, err := asNobody(read...); err != nil {
			t.Errorf("nobody: %s: %v\n%s", read[2], err, out)
		}
	}
	for _, del := range [][]string{
		{dest, string(Path), Interface + ".DeleteLease", "string:tcp", "uint16:8080"},
		{dest, string(Path), Interface + ".DeleteClient", "string:198.51.100.10"},
		{dest, string(Path), "org.freedesktop.DBus.Properties.Set", "string:" + Interface, "string:LeaseCount", "variant:uint32:0"},
		{"--dest=org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus.RequestName", "string:" + BusName, "uint32:4"},
	} {
		out, err := asNobody(del...)
		if err == nil || !strings.Contains(out, "AccessDenied") {
			t.Errorf("nobody: %s: %v, want AccessDenied\n%s", del[2], err, out)
		}
	}
	if got := fb.deleted(); len(got) != 0 {
		t.Errorf("backend deleted %+v", got)
	}
	// Root may.
	out, err := exec.Command("dbus-send", "--bus="+bus.Address, "--print-reply", dest, string(Path),
		Interface+".DeleteLease", "string:tcp", "uint16:8080").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "uint32 1") {
		t.Errorf("root: DeleteLease: %v\n%s", err, out)
	}
}

// TestReconnect: when the bus goes away and comes back the Service owns the
// name again and reports changes; meanwhile notices do not block.
func TestReconnect(t *testing.T) {
	bus := startBus(t)
	s := runService(t, bus, newFake(), nil)
	client(t, bus)

	bus.Stop()
	for range 2 * maxQueue {
		s.LeaseAdded(lease1, 1) // dropped: not connected
	}
	bus.Restart()
	conn := client(t, bus) // waits for the name, within retryMax
	ch := signals(t, conn)
	s.LeaseRemoved(lease1, "expired", 1)
	if sig := nextSignal(t, ch); sig.Name != Interface+".LeaseRemoved" {
		t.Errorf("after reconnecting: signal %s %v", sig.Name, sig.Body)
	}
	var n uint32
	if err := call(conn, Interface+".DeleteLease", &n, "tcp", uint16(8080)); err != nil || n != 1 {
		t.Errorf("DeleteLease after reconnecting = %d, %v", n, err)
	}
}

func TestConnectErrors(t *testing.T) {
	s := New(Config{Address: "unix:path=/nonexistent/dpf-test-bus", Backend: newFake(), Logger: testLogger(t)})
	if err := s.Connect(context.Background()); err == nil {
		t.Error("Connect to a missing bus succeeded")
	}
	// Run keeps retrying and returns when told to.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	start := time.Now()
	s.Run(ctx)
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("Run returned %v after its context ended", d-1500*time.Millisecond)
	}

	bus := startBus(t)
	runService(t, bus, newFake(), nil)
	client(t, bus)
	second := New(Config{Address: bus.Address, Backend: newFake(), IsAdmin: isTestAdmin, Logger: testLogger(t)})
	if err := second.Connect(context.Background()); !errors.Is(err, ErrNameTaken) {
		t.Errorf("second Connect: %v, want ErrNameTaken", err)
	}
}

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// TestCloseAfterConnect: Close releases the name Connect took, for a daemon
// whose start-up fails before Run.
func TestCloseAfterConnect(t *testing.T) {
	bus := startBus(t)
	s := New(Config{Address: bus.Address, Backend: newFake(), IsAdmin: isTestAdmin, Logger: testLogger(t)})
	if err := s.Connect(context.Background()); err != nil {
		t.Fatal(err)
	}
	conn := client(t, bus)
	s.Close()
	waitOwner(t, conn, false)
	if s.enter() {
		t.Error("method calls accepted after Close")
	}
}
