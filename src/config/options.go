package config

import (
	"slices"
	"time"

	"github.com/dpf-router/dpf/src/policy"
)

// Apply says what a reload of the configuration does with an option.
type Apply int

const (
	// ApplyReload: a reload applies the new value in place.
	ApplyReload Apply = iota + 1
	// ApplyRestart: the new value takes a restart of dpfd. A reload that
	// finds one of these changed applies nothing (see [RestartNeeded]).
	ApplyRestart
)

func (a Apply) String() string {
	switch a {
	case ApplyReload:
		return "reload"
	case ApplyRestart:
		return "restart"
	}
	return "unknown"
}

// OptionInfo describes one option dpfd reads.
type OptionInfo struct {
	Section string // SectionMain, SectionRule or SectionKey
	Name    string
	Apply   Apply
}

// option is one entry of a section's option table: how the option is read
// into a T, and what a reload does with it.
type option[T any] struct {
	name  string
	apply Apply
	set   func(b *builder, v *T, o *Option) error
	// same reports whether two configurations agree on the option. Every
	// ApplyRestart option of the main section has one: RestartNeeded
	// compares with it.
	same func(a, b *Config) bool
}

// lookupOption returns the entry of table named name, nil if none.
func lookupOption[T any](table []option[T], name string) *option[T] {
	for i := range table {
		if table[i].name == name {
			return &table[i]
		}
	}
	return nil
}

// mainOptions are the options of the config dpf section, in the order of
// the configuration reference. What a reload does with each: the server's
// sockets, the firewall backend, the lease database, the control socket
// and the D-Bus connection are made once, at start, so their options need
// a restart, and so does enabled (a disabled dpfd does not run at all);
// everything else is applied in place.
var mainOptions = []option[Config]{
	{name: "enabled", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.Enabled, err = b.boolean(o); return },
		same: func(a, b *Config) bool { return a.Enabled == b.Enabled }},
	{name: "lan_interface", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.LANInterfaces, err = b.lanInterfaces(o); return },
		same: func(a, b *Config) bool { return sameSet(a.LANInterfaces, b.LANInterfaces) }},
	{name: "wan_interface", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.WANInterface, err = b.wanInterface(o); return },
		same: func(a, b *Config) bool { return a.WANInterface == b.WANInterface }},
	{name: "external_address", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.ExternalAddress, err = b.externalAddress(o)
			return
		}},
	{name: "backend", apply: ApplyRestart,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.Backend, err = b.oneOf(o, BackendAuto, BackendNftables, BackendIptables)
			return
		},
		same: func(a, b *Config) bool { return a.Backend == b.Backend }},
	{name: "db", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.DB, err = b.path(o); return },
		same: func(a, b *Config) bool { return a.DB == b.DB }},
	{name: "socket", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.Socket, err = b.path(o); return },
		same: func(a, b *Config) bool { return a.Socket == b.Socket }},
	{name: "min_lifetime", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.MinLifetime, err = b.seconds(o, time.Second, MaxLifetimeLimit)
			return
		}},
	{name: "max_lifetime", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.MaxLifetime, err = b.seconds(o, time.Second, MaxLifetimeLimit)
			return
		}},
	{name: "max_per_host", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.MaxPerHost, err = b.integer(o, 1); return }},
	{name: "max_leases", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.MaxLeases, err = b.integer(o, 1); return }},
	{name: "rate_limit", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.RateLimit, err = b.rate(o); return }},
	{name: "rate_burst", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.RateBurst, err = b.integer(o, 1); return }},
	{name: "reserved_ports", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.ReservedPorts, err = b.reservedPorts(o); return }},
	{name: "checkpoint_interval", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.CheckpointInterval, err = b.seconds(o, 0, MaxLifetimeLimit)
			return
		}},
	{name: "log_level", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) {
			c.LogLevel, err = b.oneOf(o, "debug", "info", "warn", "error")
			return
		}},
	{name: "dbus", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.DBus, err = b.dbusMode(o); return },
		same: func(a, b *Config) bool { return a.DBus == b.DBus }},
	{name: "dbus_address", apply: ApplyRestart,
		set:  func(b *builder, c *Config, o *Option) (err error) { c.DBusAddress, err = b.dbusAddress(o); return },
		same: func(a, b *Config) bool { return a.DBusAddress == b.DBusAddress }},
	{name: "auth", apply: ApplyReload,
		set: func(b *builder, c *Config, o *Option) (err error) { c.Auth, err = b.authMode(o); return }},
}

// ruleOptions are the options of a config rule section. A reload replaces
// every rule, so each applies in place.
var ruleOptions = []option[policy.Rule]{
	{name: "action", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.Action, err = b.action(o)
		return
	}},
	{name: "int_addr", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.IntAddrs, r.UseLAN, err = b.prefixes(o, true)
		return
	}},
	{name: "client", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.Clients, _, err = b.prefixes(o, false)
		return
	}},
	{name: "int_ports", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.IntPorts, err = b.ports(o)
		return
	}},
	{name: "ext_ports", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.ExtPorts, err = b.ports(o)
		return
	}},
	{name: "proto", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.Proto, err = b.proto(o)
		return
	}},
	{name: "third_party", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.ThirdParty, err = b.boolean(o)
		return
	}},
	{name: "auth", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.AuthAny, r.AuthKeys, err = b.ruleAuth(o)
		return
	}},
	{name: "name", apply: ApplyReload, set: func(b *builder, r *policy.Rule, o *Option) (err error) {
		r.Name, err = b.single(o)
		return
	}},
}

// keyOptions are the options of a config key section. A reload replaces
// every key, so each applies in place.
var keyOptions = []option[Key]{
	{name: "name", apply: ApplyReload, set: func(b *builder, k *Key, o *Option) (err error) {
		k.Name, err = b.single(o)
		return
	}},
	{name: "secret", apply: ApplyReload, set: func(b *builder, k *Key, o *Option) (err error) {
		k.Secret, err = b.secret(o)
		return
	}},
	{name: "address", apply: ApplyReload, set: func(b *builder, k *Key, o *Option) (err error) {
		k.Addresses, _, err = b.prefixes(o, false)
		return
	}},
}

// Options returns every option dpfd reads, section by section (main, rule,
// key) in the order of the configuration reference, with what a reload
// does with it.
func Options() []OptionInfo {
	var out []OptionInfo
	for _, o := range mainOptions {
		out = append(out, OptionInfo{SectionMain, o.name, o.apply})
	}
	for _, o := range ruleOptions {
		out = append(out, OptionInfo{SectionRule, o.name, o.apply})
	}
	for _, o := range keyOptions {
		out = append(out, OptionInfo{SectionKey, o.name, o.apply})
	}
	return out
}

// RestartNeeded returns the options of the main section that need a
// restart (ApplyRestart) and differ between old, the configuration dpfd
// runs with, and cur, the one a reload read, in table order; none when
// the reload can apply cur in place.
func RestartNeeded(old, cur *Config) []string {
	var out []string
	for _, o := range mainOptions {
		if o.apply == ApplyRestart && !o.same(old, cur) {
			out = append(out, o.name)
		}
	}
	return out
}

// sameSet reports whether a and b hold the same words, in any order.
func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
