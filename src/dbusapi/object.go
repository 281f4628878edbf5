package dbusapi

import (
	"context"
	"math"
	"net/netip"
	"slices"
	"strings"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/introspect"
	"github.com/godbus/dbus/v5/prop"

	"github.com/dpf-router/dpf/src/control"
)

// D-Bus error names the methods return besides godbus's own.
const (
	errInvalidArgs  = "org.freedesktop.DBus.Error.InvalidArgs"
	errAccessDenied = "org.freedesktop.DBus.Error.AccessDenied"
	errFailed       = "org.freedesktop.DBus.Error.Failed"
)

func dbusError(name, msg string) *dbus.Error { return dbus.NewError(name, []any{msg}) }

var errStopped = dbusError(errFailed, "dpfd is stopping")

// object is what is exported at Path as Interface: godbus calls its
// exported methods that return *dbus.Error, each on its own goroutine. conn
// is the connection it was exported on, used to ask who is calling.
type object struct {
	s    *Service
	conn *dbus.Conn
}

// Status implements org.dpf.Router1.Status.
func (o *object) Status() (map[string]dbus.Variant, *dbus.Error) {
	if !o.s.enter() {
		return nil, errStopped
	}
	defer o.s.calls.Done()
	return statusDict(o.s.cfg.Backend.Status()), nil
}

// ListLeases implements org.dpf.Router1.ListLeases.
func (o *object) ListLeases() ([]map[string]dbus.Variant, *dbus.Error) {
	if !o.s.enter() {
		return nil, errStopped
	}
	defer o.s.calls.Done()
	ls := o.s.cfg.Backend.Leases()
	out := make([]map[string]dbus.Variant, 0, len(ls))
	for _, l := range ls {
		out = append(out, leaseDict(l, ""))
	}
	return out, nil
}

// DeleteLease implements org.dpf.Router1.DeleteLease.
func (o *object) DeleteLease(sender dbus.Sender, proto string, extPort uint16) (uint32, *dbus.Error) {
	if !o.s.enter() {
		return 0, errStopped
	}
	defer o.s.calls.Done()
	p := strings.ToLower(proto)
	if p != "tcp" && p != "udp" {
		return 0, dbusError(errInvalidArgs, "protocol "+quote(proto)+": want tcp or udp")
	}
	if extPort == 0 {
		return 0, dbusError(errInvalidArgs, "external port 0: want 1-65535")
	}
	return o.delete(sender, control.DeleteParams{Proto: p, ExternalPort: extPort})
}

// DeleteClient implements org.dpf.Router1.DeleteClient.
func (o *object) DeleteClient(sender dbus.Sender, addr string) (uint32, *dbus.Error) {
	if !o.s.enter() {
		return 0, errStopped
	}
	defer o.s.calls.Done()
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return 0, dbusError(errInvalidArgs, "address "+quote(addr)+": not an IP address")
	}
	return o.delete(sender, control.DeleteParams{Client: a.Unmap().String()})
}

func (o *object) delete(sender dbus.Sender, p control.DeleteParams) (uint32, *dbus.Error) {
	if derr := o.authorize(sender); derr != nil {
		return 0, derr
	}
	ls, err := o.s.cfg.Backend.Delete(p)
	if err != nil {
		return 0, dbusError(errFailed, err.Error())
	}
	return clampU32(int64(len(ls))), nil
}

// authorize lets the caller delete only if Config.IsAdmin accepts its uid,
// which the bus tells (the bus policy should have refused the call already;
// this holds when the policy file is missing or too loose).
func (o *object) authorize(sender dbus.Sender) *dbus.Error {
	ctx, cancel := context.WithTimeout(context.Background(), callTimeout)
	defer cancel()
	var uid uint32
	err := o.conn.BusObject().CallWithContext(ctx, "org.freedesktop.DBus.GetConnectionUnixUser", 0, string(sender)).Store(&uid)
	if err != nil {
		o.s.log.Warn("D-Bus: cannot tell who is calling; refusing", "sender", string(sender), "err", err)
		return dbusError(errAccessDenied, "cannot tell who is calling")
	}
	if !o.s.cfg.IsAdmin(uid) {
		o.s.log.Info("D-Bus: refused a deletion", "sender", string(sender), "uid", uid)
		return dbusError(errAccessDenied, "only root may delete leases")
	}
	return nil
}

func quote(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return `"` + s + `"`
}

// clampU32 fits n into a D-Bus u.
func clampU32(n int64) uint32 {
	return uint32(min(max(n, 0), math.MaxUint32))
}

// leaseDict is a lease as a D-Bus a{sv}; reason, when not empty, is added
// (LeaseRemoved).
func leaseDict(l control.Lease, reason string) map[string]dbus.Variant {
	filters := l.Filters
	if filters == nil {
		filters = []string{}
	}
	d := map[string]dbus.Variant{
		"proto":       dbus.MakeVariant(l.Proto),
		"ext_port":    dbus.MakeVariant(l.ExternalPort),
		"int_addr":    dbus.MakeVariant(l.InternalAddr),
		"int_port":    dbus.MakeVariant(l.InternalPort),
		"client":      dbus.MakeVariant(l.Client),
		"origin":      dbus.MakeVariant(l.Origin),
		"description": dbus.MakeVariant(l.Description),
		"filters":     dbus.MakeVariant(filters),
		"lifetime":    dbus.MakeVariant(clampU32(l.Lifetime)),
		"created":     dbus.MakeVariant(l.Created.Unix()),
		"expires":     dbus.MakeVariant(l.Expires.Unix()),
		"expires_in":  dbus.MakeVariant(clampU32(l.ExpiresIn)),
	}
	if reason != "" {
		d["reason"] = dbus.MakeVariant(reason)
	}
	return d
}

// statusDict is the daemon's status as a D-Bus a{sv}.
func statusDict(st control.Status) map[string]dbus.Variant {
	strs := func(ss []string) dbus.Variant {
		if ss == nil {
			ss = []string{}
		}
		return dbus.MakeVariant(ss)
	}
	counters := st.Counters
	if counters == nil {
		counters = map[string]uint64{}
	}
	return map[string]dbus.Variant{
		"version":          dbus.MakeVariant(st.Version),
		"backend":          dbus.MakeVariant(st.Backend),
		"wan_interface":    dbus.MakeVariant(st.WANInterface),
		"external_address": dbus.MakeVariant(st.ExternalAddress),
		"lan_interfaces":   strs(st.LANInterfaces),
		"lan_subnets":      strs(st.LANSubnets),
		"listening":        strs(st.Listening),
		"leases":           dbus.MakeVariant(clampU32(int64(st.Leases))),
		"max_leases":       dbus.MakeVariant(clampU32(int64(st.MaxLeases))),
		"epoch":            dbus.MakeVariant(st.Epoch),
		"uptime_seconds":   dbus.MakeVariant(st.Uptime),
		"db":               dbus.MakeVariant(st.DB),
		"counters":         dbus.MakeVariant(counters),
	}
}

// interfaceData describes Interface for introspection, with argument names
// (godbus's introspect.Methods leaves them out); a test checks that the
// types match the object's methods. The properties come from the exported
// prop.Properties.
func interfaceData() introspect.Interface {
	arg := func(name, typ, dir string) introspect.Arg {
		return introspect.Arg{Name: name, Type: typ, Direction: dir}
	}
	return introspect.Interface{
		Name: Interface,
		Methods: []introspect.Method{
			{Name: "Status", Args: []introspect.Arg{arg("status", "a{sv}", "out")}},
			{Name: "ListLeases", Args: []introspect.Arg{arg("leases", "aa{sv}", "out")}},
			{Name: "DeleteLease", Args: []introspect.Arg{arg("proto", "s", "in"), arg("ext_port", "q", "in"), arg("deleted", "u", "out")}},
			{Name: "DeleteClient", Args: []introspect.Arg{arg("addr", "s", "in"), arg("deleted", "u", "out")}},
		},
		Signals: []introspect.Signal{
			{Name: "LeaseAdded", Args: []introspect.Arg{{Name: "lease", Type: "a{sv}"}}},
			{Name: "LeaseRemoved", Args: []introspect.Arg{{Name: "lease", Type: "a{sv}"}}},
		},
	}
}

// introspection returns the Introspectable to export on Path and on each of
// its ancestors (which list their one child, so that tools walking the
// tree from / find the object).
func introspection(props *prop.Properties) map[dbus.ObjectPath]introspect.Introspectable {
	iface := interfaceData()
	iface.Properties = props.Introspection(Interface)
	slices.SortFunc(iface.Properties, func(a, b introspect.Property) int { return strings.Compare(a.Name, b.Name) })
	out := map[dbus.ObjectPath]introspect.Introspectable{
		Path: introspect.NewIntrospectable(&introspect.Node{
			Name:       string(Path),
			Interfaces: []introspect.Interface{iface, prop.IntrospectData},
		}),
	}
	// "/org/dpf/Router" -> "/" lists org, "/org" lists dpf, "/org/dpf"
	// lists Router.
	parts := strings.Split(strings.TrimPrefix(string(Path), "/"), "/")
	for i := range parts {
		parent := "/" + strings.Join(parts[:i], "/")
		out[dbus.ObjectPath(parent)] = introspect.NewIntrospectable(&introspect.Node{
			Name:     parent,
			Children: []introspect.Node{{Name: parts[i]}},
		})
	}
	return out
}
