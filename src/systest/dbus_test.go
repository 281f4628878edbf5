package systest

import (
	"bufio"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/dbusapi"
	"github.com/dpf-router/dpf/src/dbusapi/dbustest"
	"github.com/dpf-router/dpf/src/internal/lab"
)

func needDBusTools(t *testing.T) {
	t.Helper()
	needTools(t)
	dbustest.Require(t)
	for _, tool := range []string{"dbus-send", "dbus-monitor", "setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed (Debian packages dbus-bin, util-linux): %v", tool, err)
		}
	}
}

// startDBus starts a private system-like bus with the shipped policy; its
// socket is a file, so dpfd reaches it from the router namespace.
func startDBus(t *testing.T) *dbustest.Bus {
	return dbustest.Start(t, dbustest.Options{Policies: []string{dbustest.PolicyFile}})
}

// dbusSend runs dbus-send against bus (as root, or as nobody) and returns
// its output with runs of white space folded into one space.
func dbusSend(bus *dbustest.Bus, asNobody bool, args ...string) (string, error) {
	argv := append([]string{"dbus-send", "--bus=" + bus.Address, "--print-reply", "--reply-timeout=10000"}, args...)
	if asNobody {
		argv = append([]string{"setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"}, argv...)
	}
	out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput()
	return strings.Join(strings.Fields(string(out)), " "), err
}

// callRouter calls a method of dpfd's object.
func callRouter(bus *dbustest.Bus, asNobody bool, method string, args ...string) (string, error) {
	return dbusSend(bus, asNobody, append([]string{"--dest=" + dbusapi.BusName, string(dbusapi.Path), method}, args...)...)
}

// monitor is dbus-monitor watching dpfd's signals, its output kept as
// messages (a header line and its body, white space folded).
type monitor struct {
	cmd  *exec.Cmd
	mu   sync.Mutex
	msgs []string
	seen int // messages already matched by wait
}

func startMonitor(t *testing.T, bus *dbustest.Bus) *monitor {
	t.Helper()
	m := &monitor{cmd: exec.Command("dbus-monitor", "--address", bus.Address, "--monitor",
		"type='signal',path='"+string(dbusapi.Path)+"'")}
	out, err := m.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lab.Stop(m.cmd, 15) })
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			m.mu.Lock()
			if strings.HasPrefix(line, "signal ") || strings.HasPrefix(line, "method ") || strings.HasPrefix(line, "error ") {
				m.msgs = append(m.msgs, line)
			} else if n := len(m.msgs); n > 0 {
				m.msgs[n-1] += " " + strings.Join(strings.Fields(line), " ")
			}
			m.mu.Unlock()
		}
	}()
	// dbus-monitor is ready once it sees a signal on the path.
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, err := exec.Command("dbus-send", "--bus="+bus.Address, "--type=signal", string(dbusapi.Path), "org.dpf.Test.Ping").CombinedOutput()
		if err != nil {
			t.Fatalf("dbus-send a ping: %v\n%s", err, out)
		}
		m.mu.Lock()
		ready := len(m.msgs) > 0 && strings.Contains(strings.Join(m.msgs, "\n"), "member=Ping")
		m.mu.Unlock()
		if ready {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatal("dbus-monitor does not see signals")
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// wait returns the first message after those already returned that
// contains every one of parts, waiting at most 10 s.
func (m *monitor) wait(t *testing.T, parts ...string) string {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		m.mu.Lock()
		for i := m.seen; i < len(m.msgs); i++ {
			ok := true
			for _, p := range parts {
				ok = ok && strings.Contains(m.msgs[i], p)
			}
			if ok {
				m.seen = i + 1
				msg := m.msgs[i]
				m.mu.Unlock()
				return msg
			}
		}
		all := strings.Join(m.msgs, "\n")
		m.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("dbus-monitor saw no signal with %q; it saw:\n%s", parts, all)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitOwner waits until dpfd owns (or no longer owns) its name.
func waitOwner(t *testing.T, bus *dbustest.Bus, owned bool) {
	t.Helper()
	deadline := time.Now().Add(45 * time.Second) // dpfd retries at most every 30 s
	want := fmt.Sprintf("boolean %v", owned)
	for {
		out, err := dbusSend(bus, false, "--dest=org.freedesktop.DBus", "/org/freedesktop/DBus",
			"org.freedesktop.DBus.NameHasOwner", "string:"+dbusapi.BusName)
		if err == nil && strings.Contains(out, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: NameHasOwner = %q (%v), want %s", dbusapi.BusName, out, err, want)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDBusInterface: dpfd in the lab router owns org.dpf.Router on a
// private system-like bus with the shipped policy. A mapping made by
// natpmpc on a LAN host shows in ListLeases, LeaseCount and a LeaseAdded
// signal; DeleteLease over D-Bus closes the pinhole and signals
// LeaseRemoved; nobody may read but not delete; introspection lists the
// API; and losing the bus does not stop dpfd, which owns the name again
// when the bus is back.
func TestDBusInterface(t *testing.T) {
	needDBusTools(t)
	bus := startDBus(t)
	r := newRouter(t, "nftables", 1)
	r.writeConfig(fmt.Sprintf("\toption dbus '1'\n\toption dbus_address '%s'\n", bus.Address))
	r.start()
	waitOwner(t, bus, true)
	mon := startMonitor(t, bus)
	r.echoServers(0, 8080)

	ext, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	r.mustReach("tcp", ext)
	port := fmt.Sprintf(`string "ext_port" variant uint16 %d`, ext)
	mon.wait(t, "member=LeaseAdded", port, `string "int_addr" variant string "`+lab.LANHost(0).String()+`"`)
	mon.wait(t, "member=PropertiesChanged", `string "LeaseCount" variant uint32 1`)

	out, err := callRouter(bus, false, dbusapi.Interface+".ListLeases")
	if err != nil || !strings.Contains(out, port) || !strings.Contains(out, `string "origin" variant string "natpmp"`) {
		t.Fatalf("ListLeases: %v\n%s", err, out)
	}
	out, err = callRouter(bus, false, "org.freedesktop.DBus.Properties.Get", "string:"+dbusapi.Interface, "string:LeaseCount")
	if err != nil || !strings.Contains(out, "variant uint32 1") {
		t.Errorf("LeaseCount: %v\n%s", err, out)
	}
	out, err = callRouter(bus, false, "org.freedesktop.DBus.Properties.GetAll", "string:"+dbusapi.Interface)
	if err != nil || !strings.Contains(out, `string "Backend" variant string "nftables"`) ||
		!strings.Contains(out, `string "ExternalAddress" variant string "`+lab.RouterWAN.String()+`"`) {
		t.Errorf("GetAll: %v\n%s", err, out)
	}
	out, err = callRouter(bus, false, dbusapi.Interface+".Status")
	if err != nil || !strings.Contains(out, `string "leases" variant uint32 1`) || !strings.Contains(out, `string "backend" variant string "nftables"`) {
		t.Errorf("Status: %v\n%s", err, out)
	}

	out, err = callRouter(bus, false, "org.freedesktop.DBus.Introspectable.Introspect")
	if err != nil {
		t.Fatalf("Introspect: %v\n%s", err, out)
	}
	for _, want := range []string{`<interface name="org.dpf.Router1">`, `<method name="Status">`, `<method name="ListLeases">`,
		`<method name="DeleteLease"><arg name="proto" type="s" direction="in"></arg><arg name="ext_port" type="q" direction="in"></arg><arg name="deleted" type="u" direction="out"></arg></method>`,
		`<method name="DeleteClient">`, `<signal name="LeaseAdded">`, `<signal name="LeaseRemoved">`,
		`<property name="LeaseCount" type="u" access="read">`, `<property name="ExternalAddress" type="s" access="read">`,
		`<property name="Backend" type="s" access="read">`, `<interface name="org.freedesktop.DBus.Properties">`} {
		if !strings.Contains(out, want) {
			t.Errorf("introspection lacks %s\n%s", want, out)
		}
	}

	// Another user may read but not delete, nor take the name.
	if out, err := callRouter(bus, true, dbusapi.Interface+".ListLeases"); err != nil || !strings.Contains(out, port) {
		t.Errorf("nobody: ListLeases: %v\n%s", err, out)
	}
	if out, err := callRouter(bus, true, dbusapi.Interface+".DeleteLease", "string:tcp", fmt.Sprintf("uint16:%d", ext)); err == nil ||
		!strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") {
		t.Errorf("nobody: DeleteLease: %v, want AccessDenied\n%s", err, out)
	}
	if out, err := callRouter(bus, true, dbusapi.Interface+".DeleteClient", "string:"+lab.LANHost(0).String()); err == nil ||
		!strings.Contains(out, "org.freedesktop.DBus.Error.AccessDenied") {
		t.Errorf("nobody: DeleteClient: %v, want AccessDenied\n%s", err, out)
	}
	r.mustReach("tcp", ext)
	if ls := r.leases(); len(ls) != 1 {
		t.Fatalf("after nobody's attempts: %d leases", len(ls))
	}

	// Root deletes it: the pinhole closes and LeaseRemoved says why.
	out, err = callRouter(bus, false, dbusapi.Interface+".DeleteLease", "string:tcp", fmt.Sprintf("uint16:%d", ext))
	if err != nil || !strings.Contains(out, "uint32 1") {
		t.Fatalf("DeleteLease: %v\n%s", err, out)
	}
	mon.wait(t, "member=LeaseRemoved", port, `string "reason" variant string "deleted by administrator"`)
	mon.wait(t, "member=PropertiesChanged", `string "LeaseCount" variant uint32 0`)
	r.mustNotReach("tcp", ext)
	if ls := r.leases(); len(ls) != 0 {
		t.Errorf("after DeleteLease: leases %+v", ls)
	}
	if out, err := callRouter(bus, false, dbusapi.Interface+".DeleteLease", "string:tcp", fmt.Sprintf("uint16:%d", ext)); err != nil || !strings.Contains(out, "uint32 0") {
		t.Errorf("DeleteLease again: %v, want 0\n%s", err, out)
	}

	// A lease that lapses is signalled as expired (min_lifetime is 2 s).
	if _, _, err := r.natpmpc(0, "-a", "8080", "8080", "udp", "2"); err != nil {
		t.Fatal(err)
	}
	mon.wait(t, "member=LeaseAdded", `string "proto" variant string "udp"`)
	mon.wait(t, "member=LeaseRemoved", `string "proto" variant string "udp"`, `string "reason" variant string "expired"`)

	// The bus goes away: dpfd keeps serving, and owns the name again once
	// the bus is back.
	bus.Stop()
	ext2, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatalf("natpmpc with the bus gone: %v", err)
	}
	r.mustReach("tcp", ext2)
	bus.Restart()
	waitOwner(t, bus, true)
	out, err = callRouter(bus, false, dbusapi.Interface+".ListLeases")
	if err != nil || !strings.Contains(out, fmt.Sprintf(`string "ext_port" variant uint16 %d`, ext2)) {
		t.Errorf("ListLeases after the bus came back: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`D-Bus: connection to the bus lost`).MatchString(r.logBuf.String()) {
		t.Errorf("dpfd did not log the lost connection")
	}
}

// TestDBusOption: with option dbus '1' dpfd refuses to start without its
// bus; with 'auto' it runs without one.
func TestDBusOption(t *testing.T) {
	needDBusTools(t)
	r := newRouter(t, "nftables", 1)
	missing := "unix:path=" + r.dir + "/no-bus"

	r.writeConfig(fmt.Sprintf("\toption dbus '1'\n\toption dbus_address '%s'\n", missing))
	out, err := r.lab.Output(30*time.Second, r.lab.Router, dpfdBin, "run", "-c", r.cfgPath)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || !strings.Contains(out, "option dbus '1'") {
		t.Fatalf("dpfd with dbus '1' and no bus: %v\n%s", err, out)
	}

	r.writeConfig(fmt.Sprintf("\toption dbus 'auto'\n\toption dbus_address '%s'\n", missing))
	r.start()
	r.echoServers(0, 8080)
	ext, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	r.mustReach("tcp", ext)
	if !strings.Contains(r.logBuf.String(), "D-Bus: no usable bus") {
		t.Errorf("dpfd did not log running without the bus")
	}
}
