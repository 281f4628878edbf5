package config

import (
	"fmt"
	"net/netip"
	"os"
	"time"

	"github.com/dpf-router/dpf/src/policy"
)

// Section types dpfd reads; sections of other types are ignored, since other
// tools may share the file.
const (
	SectionMain = "dpf"  // exactly one, typically named main
	SectionRule = "rule" // zero or more, in policy order
	// SectionKey ("key", auth.go): zero or more client keys.
)

// Backends accepted by option backend.
const (
	BackendAuto     = "auto"
	BackendNftables = "nftables"
	BackendIptables = "iptables"
)

// Values of option dbus (Config.DBus). The file may also say any UCI boolean:
// true values mean DBusOn, false ones DBusOff.
const (
	DBusAuto = "auto"
	DBusOn   = "on"
	DBusOff  = "off"
)

// Defaults for options that are absent. See [Config] for their meaning.
const (
	DefaultDB                 = "/etc/dpf/leases.db"
	DefaultSocket             = "/var/run/dpfd.sock"
	DefaultMinLifetime        = 120 * time.Second
	DefaultMaxLifetime        = 86400 * time.Second
	DefaultMaxPerHost         = 64
	DefaultMaxLeases          = 4096
	DefaultRateLimit          = 20.0
	DefaultRateBurst          = 40
	DefaultCheckpointInterval = 300 * time.Second
	DefaultLogLevel           = "info"
	DefaultDBus               = DBusAuto
)

// MaxLifetimeLimit is the largest lifetime a PCP or NAT-PMP message can
// carry, a 32-bit count of seconds (RFC 6887 section 7.1, RFC 6886 section
// 3.3); max_lifetime and min_lifetime may not exceed it.
const MaxLifetimeLimit = (1<<32 - 1) * time.Second

// Config is dpfd's configuration as read from the "config dpf" section and
// the "config rule" sections. Unlike the Config structs of dpfd's other
// packages its zero value is not usable: get one from [Default], [FromFile]
// or [Load], which fill in every default.
type Config struct {
	// Enabled is option enabled (UCI boolean), default true. When false
	// dpfd starts, answers nothing and removes its firewall state.
	Enabled bool
	// LANInterfaces is list lan_interface (or an option holding names
	// separated by spaces): the interfaces dpfd listens on and whose
	// subnets rules with "int_addr lan" mean. Required, at least one.
	// Names are Linux device names or OpenWrt logical interfaces; resolving
	// them is the caller's job.
	LANInterfaces []string
	// WANInterface is option wan_interface, required.
	WANInterface string
	// ExternalAddress is option external_address: overrides the address
	// reported to clients as external. The zero Addr (default) means the
	// WAN interface's first IPv4 address.
	ExternalAddress netip.Addr
	// Backend is option backend: auto (default), nftables or iptables.
	Backend string
	// DB is option db, the lease store's path; default DefaultDB.
	DB string
	// Socket is option socket, the control socket's path; default
	// DefaultSocket.
	Socket string
	// MinLifetime and MaxLifetime are options min_lifetime and
	// max_lifetime in seconds (defaults 120 and 86400): the bounds to which
	// requested lifetimes are clamped. 1 <= min <= max <= MaxLifetimeLimit.
	MinLifetime, MaxLifetime time.Duration
	// MaxPerHost is option max_per_host, the most leases one internal host
	// may hold; default 64, at least 1.
	MaxPerHost int
	// MaxLeases is option max_leases, the most leases in total; default
	// 4096, at least 1.
	MaxLeases int
	// RateLimit is option rate_limit, requests per second allowed per
	// source host; default 20, a finite number above 0.
	RateLimit float64
	// RateBurst is option rate_burst, the requests a host may send at once
	// above RateLimit; default 40, at least 1.
	RateBurst int
	// CheckpointInterval is option checkpoint_interval in seconds, default
	// 300: how far the stored expiry of a renewed lease may fall behind its
	// real expiry before it is written to the store (fewer flash writes).
	// 0 writes every renewal.
	CheckpointInterval time.Duration
	// LogLevel is option log_level: debug, info (default), warn or error.
	LogLevel string
	// DBus is option dbus: whether dpfd offers its D-Bus interface (the
	// name org.dpf.Router on the system bus).
	//
	//	DBusAuto  "auto" (default): when there is a bus. dpfd connects if
	//	          it can; if it cannot (no bus socket, no dbus-daemon, the
	//	          name refused) it runs without, logs that once and keeps
	//	          trying quietly, so a bus started later is still used.
	//	DBusOn    "1" (any UCI true): required. dpfd does not start (exit
	//	          1) unless it can connect and own the name; a connection
	//	          lost later is logged and retried, it never stops dpfd.
	//	DBusOff   "0" (any UCI false): never.
	DBus string
	// DBusAddress is option dbus_address: the D-Bus address of the bus
	// to use, e.g. "unix:path=/run/dbus/system_bus_socket". Empty
	// (default) means the system bus: $DBUS_SYSTEM_BUS_ADDRESS, else
	// unix:path=/var/run/dbus/system_bus_socket.
	DBusAddress string
	// ReservedPorts is option (or list) reserved_ports: external ports
	// never handed out, whatever the rules allow, because the router
	// itself serves them. Words like 22/tcp, 53 (both protocols) or
	// 6000-6010/udp, "default" for DefaultReservedPorts (the default when
	// the option is absent), or "none" alone. dpfd adds the ports the
	// router's own sockets listen on (wildcard or WAN address) to these.
	ReservedPorts []ReservedPort
	// Rules are the policy rules from the "config rule" sections in file
	// order, or policy.DefaultRules() when the file has no rule section.
	// Options of a rule section, with the meaning of an absent option:
	//
	//	action       allow or deny; required
	//	int_addr     addresses, CIDR prefixes and the word lan (the LAN
	//	             subnets, Rule.UseLAN), as a list or separated by spaces;
	//	             absent: any internal address
	//	client       addresses and CIDR prefixes of the requesting host;
	//	             absent: any client
	//	int_ports    a port, a range like 1024-65535, or any; absent: any
	//	ext_ports    as int_ports; absent: any (not 1024-65535: a rule
	//	             says what it allows, the shipped rule says 1024-65535)
	//	proto        tcp, udp or any (also "tcp udp", both, all); absent: any
	//	third_party  UCI boolean; absent: 0
	//	name         a name for messages; absent: the section's name
	//
	//	auth         names of keys (config key sections), or any: the
	//	             rule applies only to requests authenticated by one
	//	             of these keys (any: by any key); absent: to every
	//	             request (Rule.AuthKeys, Rule.AuthAny)
	//
	// Rule.Line is the line of the section's config statement.
	Rules []policy.Rule
	// Auth is option auth: whether PCP requests are authenticated with
	// DPF's AUTH option (see auth.go): AuthOff (default: the option is
	// refused as unsupported), AuthOptional (keyed requests get their
	// key's rights, others are served as without authentication) or
	// AuthRequired (PCP requests must be authenticated, NAT-PMP mapping
	// requests are refused); 'required' needs at least one key.
	Auth string
	// Keys are the "config key" sections in file order (see Key).
	Keys []Key
}

// Default returns the defaults: enabled, no interfaces (so it is not a
// complete configuration: FromFile requires them), and the shipped default
// rule, policy.DefaultRules(). Each call returns a new Config.
func Default() *Config {
	return &Config{
		Enabled:            true,
		Backend:            BackendAuto,
		DB:                 DefaultDB,
		Socket:             DefaultSocket,
		MinLifetime:        DefaultMinLifetime,
		MaxLifetime:        DefaultMaxLifetime,
		MaxPerHost:         DefaultMaxPerHost,
		MaxLeases:          DefaultMaxLeases,
		RateLimit:          DefaultRateLimit,
		RateBurst:          DefaultRateBurst,
		CheckpointInterval: DefaultCheckpointInterval,
		LogLevel:           DefaultLogLevel,
		DBus:               DefaultDBus,
		Rules:              policy.DefaultRules(),
		Auth:               DefaultAuth,
		ReservedPorts:      DefaultReservedPorts(),
	}
}

// Load reads, parses and checks the file at path. Content errors are
// *Error; a file that cannot be read gives the error from os.Open.
func Load(path string) (*Config, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	defer fh.Close()
	f, err := Parse(fh, path)
	if err != nil {
		return nil, err
	}
	return FromFile(f)
}

// FromFile builds the Config from a parsed file, starting from [Default].
// It requires exactly one "config dpf" section, rejects unknown options in
// dpf and rule sections (to catch typos), ignores sections of other types,
// and checks every value. All errors are *Error naming f.Name, the line and
// the option.
func FromFile(f *File) (*Config, error) {
	b := builder{file: f.Name}
	c := Default()
	var main *Section
	var rules []policy.Rule
	for i := range f.Sections {
		s := &f.Sections[i]
		switch s.Type {
		case SectionMain:
			if main != nil {
				return nil, b.errf(s.Line, "", "second config %s section (the first is at line %d); there must be exactly one", SectionMain, main.Line)
			}
			main = s
			if err := b.main(c, s); err != nil {
				return nil, err
			}
		case SectionRule:
			r, err := b.rule(s)
			if err != nil {
				return nil, err
			}
			rules = append(rules, r)
		case SectionKey:
			k, err := b.key(s)
			if err != nil {
				return nil, err
			}
			c.Keys = append(c.Keys, k)
		}
	}
	if main == nil {
		return nil, b.errf(0, "", "no config %s section (write \"config %s 'main'\")", SectionMain, SectionMain)
	}
	if err := b.checkKeys(f, c, main); err != nil {
		return nil, err
	}
	if rules != nil {
		c.Rules = rules
	}
	return c, nil
}
