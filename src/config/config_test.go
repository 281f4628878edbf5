package config

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/policy"
)

const minimal = "config dpf 'main'\n\tlist lan_interface 'br-lan'\n\toption wan_interface 'wan'\n"

func fromString(t *testing.T, s string) (*Config, error) {
	t.Helper()
	f, err := Parse(strings.NewReader(s), "/etc/config/dpf")
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	return FromFile(f)
}

func TestDefault(t *testing.T) {
	c := Default()
	if !c.Enabled || c.Backend != "auto" || c.DB != "/etc/dpf/leases.db" || c.Socket != "/var/run/dpfd.sock" ||
		c.MinLifetime != 120*time.Second || c.MaxLifetime != 86400*time.Second || c.MaxPerHost != 64 ||
		c.MaxLeases != 4096 || c.RateLimit != 20 || c.RateBurst != 40 || c.CheckpointInterval != 300*time.Second ||
		c.LogLevel != "info" || c.DBus != DBusAuto || c.DBusAddress != "" || c.LANInterfaces != nil || c.WANInterface != "" || c.ExternalAddress.IsValid() {
		t.Errorf("Default() = %+v", c)
	}
	if !reflect.DeepEqual(c.Rules, policy.DefaultRules()) {
		t.Errorf("Default rules = %+v", c.Rules)
	}
	c.Rules[0].Name = "changed"
	if Default().Rules[0].Name == "changed" {
		t.Error("Default shares its rules between calls")
	}
}

func TestFromFileMinimal(t *testing.T) {
	c, err := fromString(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.LANInterfaces = []string{"br-lan"}
	want.WANInterface = "wan"
	if !reflect.DeepEqual(c, want) {
		t.Errorf("FromFile =\n%+v\nwant\n%+v", c, want)
	}
}

// TestFromFileOptions sets each option of the dpf section to a non-default
// value and checks the field.
func TestFromFileOptions(t *testing.T) {
	tests := []struct {
		line  string
		check func(*Config) bool
	}{
		{"option enabled 0", func(c *Config) bool { return !c.Enabled }},
		{"option enabled off", func(c *Config) bool { return !c.Enabled }},
		{"option enabled disabled", func(c *Config) bool { return !c.Enabled }},
		{"option enabled FALSE", func(c *Config) bool { return !c.Enabled }},
		{"option enabled no", func(c *Config) bool { return !c.Enabled }},
		{"option enabled yes", func(c *Config) bool { return c.Enabled }},
		{"option enabled enabled", func(c *Config) bool { return c.Enabled }},
		{"option enabled on", func(c *Config) bool { return c.Enabled }},
		{"option enabled true", func(c *Config) bool { return c.Enabled }},
		{"list lan_interface eth1", func(c *Config) bool { return reflect.DeepEqual(c.LANInterfaces, []string{"br-lan", "eth1"}) }},
		{"option lan_interface 'br-lan eth1'", func(c *Config) bool { return reflect.DeepEqual(c.LANInterfaces, []string{"br-lan", "eth1"}) }},
		{"option wan_interface eth0.2", func(c *Config) bool { return c.WANInterface == "eth0.2" }},
		{"option external_address 203.0.113.1", func(c *Config) bool { return c.ExternalAddress == netip.MustParseAddr("203.0.113.1") }},
		{"option external_address 2001:db8::1", func(c *Config) bool { return c.ExternalAddress == netip.MustParseAddr("2001:db8::1") }},
		{"option external_address ::ffff:198.51.100.1", func(c *Config) bool { return c.ExternalAddress == netip.MustParseAddr("198.51.100.1") }},
		{"option backend nftables", func(c *Config) bool { return c.Backend == BackendNftables }},
		{"option backend iptables", func(c *Config) bool { return c.Backend == BackendIptables }},
		{"option db /tmp/dpf.db", func(c *Config) bool { return c.DB == "/tmp/dpf.db" }},
		{"option socket /tmp/dpf.sock", func(c *Config) bool { return c.Socket == "/tmp/dpf.sock" }},
		{"option min_lifetime 60", func(c *Config) bool { return c.MinLifetime == time.Minute }},
		{"option max_lifetime 3600", func(c *Config) bool { return c.MaxLifetime == time.Hour }},
		{"option max_lifetime 4294967295", func(c *Config) bool { return c.MaxLifetime == MaxLifetimeLimit }},
		{"option max_per_host 1", func(c *Config) bool { return c.MaxPerHost == 1 }},
		{"option max_leases 100", func(c *Config) bool { return c.MaxLeases == 100 }},
		{"option rate_limit 0.5", func(c *Config) bool { return c.RateLimit == 0.5 }},
		{"option rate_burst 1", func(c *Config) bool { return c.RateBurst == 1 }},
		{"option checkpoint_interval 0", func(c *Config) bool { return c.CheckpointInterval == 0 }},
		{"option checkpoint_interval 60", func(c *Config) bool { return c.CheckpointInterval == time.Minute }},
		{"option log_level debug", func(c *Config) bool { return c.LogLevel == "debug" }},
		{"option log_level warn", func(c *Config) bool { return c.LogLevel == "warn" }},
		{"option log_level error", func(c *Config) bool { return c.LogLevel == "error" }},
		{"option dbus auto", func(c *Config) bool { return c.DBus == DBusAuto }},
		{"option dbus AUTO", func(c *Config) bool { return c.DBus == DBusAuto }},
		{"option dbus 1", func(c *Config) bool { return c.DBus == DBusOn }},
		{"option dbus on", func(c *Config) bool { return c.DBus == DBusOn }},
		{"option dbus 0", func(c *Config) bool { return c.DBus == DBusOff }},
		{"option dbus disabled", func(c *Config) bool { return c.DBus == DBusOff }},
		{"option dbus_address unix:path=/tmp/bus", func(c *Config) bool { return c.DBusAddress == "unix:path=/tmp/bus" }},
		{"option dbus_address 'unix:abstract=/x,guid=0123;tcp:host=192.0.2.1,port=5000;'", func(c *Config) bool {
			return c.DBusAddress == "unix:abstract=/x,guid=0123;tcp:host=192.0.2.1,port=5000;"
		}},
		{"option dbus_address autolaunch:", func(c *Config) bool { return c.DBusAddress == "autolaunch:" }},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			c, err := fromString(t, minimal+"\t"+tt.line+"\n")
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config %+v", c)
			}
		})
	}
}

func TestFromFileErrors(t *testing.T) {
	const f = "/etc/config/dpf"
	tests := []struct {
		name string
		in   string
		want string
	}{
		{"no main section", "config rule\n\toption action allow\n", f + `: no config dpf section (write "config dpf 'main'")`},
		{"two main sections", minimal + "config dpf 'other'\n", f + ":4: second config dpf section (the first is at line 1); there must be exactly one"},
		{"missing lan", "config dpf main\n\toption wan_interface wan\n", f + ":1: option lan_interface: required: the LAN interfaces to serve, e.g. list lan_interface 'br-lan'"},
		{"missing wan", "config dpf main\n\tlist lan_interface br-lan\n", f + ":1: option wan_interface: required: the WAN interface, e.g. option wan_interface 'wan'"},
		{"unknown option", minimal + "\toption max_leaess 5\n", f + ":4: option max_leaess: unknown option in config dpf section"},
		{"unknown rule option", minimal + "config rule\n\toption action allow\n\toption ports 80\n", f + ":6: option ports: unknown option in config rule section"},
		{"bad boolean", minimal + "\toption enabled maybe\n", f + `:4: option enabled: "maybe" is not a boolean (use 1/0, yes/no, on/off, true/false or enabled/disabled)`},
		{"list for single option", minimal + "\tlist enabled 1\n", f + `:4: option enabled: takes one value: write "option enabled VALUE", not list`},
		{"wan list", "config dpf main\n\tlist lan_interface br-lan\n\tlist wan_interface a\n\tlist wan_interface b\n", f + `:4: option wan_interface: takes one value: write "option wan_interface VALUE", not list`},
		{"bad wan", "config dpf main\n\tlist lan_interface br-lan\n\toption wan_interface 'a/b'\n", f + `:3: option wan_interface: "a/b" is not an interface name`},
		{"empty lan", "config dpf main\n\tlist lan_interface ''\n\toption wan_interface wan\n", f + ":2: option lan_interface: empty value"},
		{"duplicate lan", minimal + "\tlist lan_interface br-lan\n", f + `:4: option lan_interface: "br-lan" is listed twice`},
		{"bad lan on its line", "config dpf main\n\tlist lan_interface ok\n\n\tlist lan_interface 'x/y'\n\toption wan_interface wan\n", f + `:4: option lan_interface: "x/y" is not an interface name`},
		{"bad address", minimal + "\toption external_address 203.0.113.300\n", f + `:4: option external_address: "203.0.113.300" is not an IP address`},
		{"unspecified address", minimal + "\toption external_address 0.0.0.0\n", f + `:4: option external_address: 0.0.0.0 cannot be an external address`},
		{"bad backend", minimal + "\toption backend pf\n", f + `:4: option backend: "pf" is not one of auto, nftables, iptables`},
		{"relative db", minimal + "\toption db leases.db\n", f + `:4: option db: "leases.db" is not an absolute path`},
		{"relative socket", minimal + "\toption socket ''\n", f + `:4: option socket: "" is not an absolute path`},
		{"bad seconds", minimal + "\toption max_lifetime abc\n", f + `:4: option max_lifetime: "abc" is not a number of seconds`},
		{"negative seconds", minimal + "\toption min_lifetime -5\n", f + `:4: option min_lifetime: "-5" is not a number of seconds`},
		{"zero min lifetime", minimal + "\toption min_lifetime 0\n", f + `:4: option min_lifetime: 0 seconds is out of range (1 to 4294967295)`},
		{"huge lifetime", minimal + "\toption max_lifetime 4294967296\n", f + `:4: option max_lifetime: 4294967296 seconds is out of range (1 to 4294967295)`},
		{"min above max", minimal + "\toption min_lifetime 600\n\toption max_lifetime 300\n", f + `:5: option max_lifetime: max_lifetime (300 s) is below min_lifetime (600 s)`},
		{"min above default max", minimal + "\toption min_lifetime 90000\n", f + `:4: option max_lifetime: max_lifetime (86400 s) is below min_lifetime (90000 s)`},
		{"bad int", minimal + "\toption max_per_host lots\n", f + `:4: option max_per_host: "lots" is not a whole number`},
		{"zero leases", minimal + "\toption max_leases 0\n", f + `:4: option max_leases: 0 is too small (at least 1)`},
		{"zero burst", minimal + "\toption rate_burst 0\n", f + `:4: option rate_burst: 0 is too small (at least 1)`},
		{"bad rate", minimal + "\toption rate_limit fast\n", f + `:4: option rate_limit: "fast" is not a number of requests per second`},
		{"NaN rate", minimal + "\toption rate_limit NaN\n", f + `:4: option rate_limit: "NaN" is not a number of requests per second`},
		{"zero rate", minimal + "\toption rate_limit 0\n", f + `:4: option rate_limit: "0" must be above 0`},
		{"bad checkpoint", minimal + "\toption checkpoint_interval 1.5\n", f + `:4: option checkpoint_interval: "1.5" is not a number of seconds`},
		{"bad log level", minimal + "\toption log_level verbose\n", f + `:4: option log_level: "verbose" is not one of debug, info, warn, error`},
		{"bad dbus", minimal + "\toption dbus maybe\n", f + `:4: option dbus: "maybe" is not auto, 1 or 0`},
		{"dbus list", minimal + "\tlist dbus 1\n", f + `:4: option dbus: takes one value: write "option dbus VALUE", not list`},
		{"empty dbus address", minimal + "\toption dbus_address ''\n", f + `:4: option dbus_address: "" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"dbus path", minimal + "\toption dbus_address /run/dbus/system_bus_socket\n", f + `:4: option dbus_address: "/run/dbus/system_bus_socket" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"dbus no key", minimal + "\n\toption dbus_address 'unix:=x'\n", f + `:5: option dbus_address: "unix:=x" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"dbus no value", minimal + "\toption dbus_address 'unix:path'\n", f + `:4: option dbus_address: "unix:path" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"dbus space", minimal + "\toption dbus_address 'unix:path=/a b'\n", f + `:4: option dbus_address: "unix:path=/a b" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"dbus empty transport", minimal + "\toption dbus_address 'unix:path=/a;:x=1'\n", f + `:4: option dbus_address: "unix:path=/a;:x=1" is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)`},
		{"rule without action", minimal + "config rule 'r'\n\toption proto tcp\n", f + `:4: option action: required in every config rule section: allow or deny`},
		{"bad action", minimal + "config rule\n\toption action permit\n", f + `:5: option action: "permit" is not allow or deny`},
		{"bad proto", minimal + "config rule\n\toption action allow\n\toption proto icmp\n", f + `:6: option proto: "icmp" is not tcp, udp or any`},
		{"bad ports", minimal + "config rule\n\toption action allow\n\toption int_ports 2000-1000\n", f + `:6: option int_ports: "2000-1000" is not a port, a range like 1024-65535 or any`},
		{"bad ext ports", minimal + "config rule\n\toption action allow\n\toption ext_ports 70000\n", f + `:6: option ext_ports: "70000" is not a port, a range like 1024-65535 or any`},
		{"bad third party", minimal + "config rule\n\toption action allow\n\toption third_party 2\n", f + `:6: option third_party: "2" is not a boolean (use 1/0, yes/no, on/off, true/false or enabled/disabled)`},
		{"bad int_addr", minimal + "config rule\n\toption action allow\n\tlist int_addr lan\n\tlist int_addr host.example\n", f + `:7: option int_addr: "host.example" is not an address or CIDR prefix`},
		{"host bits", minimal + "config rule\n\toption action allow\n\toption int_addr 192.0.2.5/24\n", f + `:6: option int_addr: "192.0.2.5/24" has bits set after the prefix length; did you mean 192.0.2.0/24?`},
		{"bad prefix", minimal + "config rule\n\toption action allow\n\toption int_addr 192.0.2.0/33\n", f + `:6: option int_addr: "192.0.2.0/33" is not an address or CIDR prefix`},
		{"zone", minimal + "config rule\n\toption action allow\n\toption client fe80::1%eth0\n", f + `:6: option client: "fe80::1%eth0" is not an address or CIDR prefix`},
		{"lan in client", minimal + "config rule\n\toption action allow\n\toption client lan\n", f + `:6: option client: "lan" is only allowed in int_addr`},
		{"empty client", minimal + "config rule\n\toption action allow\n\toption client ' '\n", f + `:6: option client: empty value`},
		{"mapped prefix", minimal + "config rule\n\toption action allow\n\toption client ::ffff:192.0.2.0/120\n", f + `:6: option client: "::ffff:192.0.2.0/120": write IPv4 prefixes in IPv4 form`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := fromString(t, tt.in)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("FromFile = %+v, %v; want *Error", c, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("FromFile error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestFromFileRules(t *testing.T) {
	in := minimal + `config other 'x'
	option whatever 1
config rule 'media'
	option action allow
	option int_addr '192.0.2.10 2001:db8::/64'
	list int_addr lan
	option client ::ffff:192.0.2.10
	option int_ports 8443
	option ext_ports 443
	option proto tcp
	option third_party 1
config rule
	option name 'no games'
	option action deny
	option ext_ports 3000-3999
	option proto 'tcp udp'
config rule
	option action allow
`
	c, err := fromString(t, in)
	if err != nil {
		t.Fatal(err)
	}
	want := []policy.Rule{
		{Action: policy.Allow, IntAddrs: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32"), netip.MustParsePrefix("2001:db8::/64")}, UseLAN: true,
			Clients: []netip.Prefix{netip.MustParsePrefix("192.0.2.10/32")}, IntPorts: policy.PortRange{First: 8443, Last: 8443}, ExtPorts: policy.PortRange{First: 443, Last: 443},
			Proto: policy.TCP, ThirdParty: true, Line: 6, Name: "media"},
		{Action: policy.Deny, IntPorts: policy.AnyPorts, ExtPorts: policy.PortRange{First: 3000, Last: 3999}, Line: 15, Name: "no games"},
		{Action: policy.Allow, IntPorts: policy.AnyPorts, ExtPorts: policy.AnyPorts, Line: 20},
	}
	if !reflect.DeepEqual(c.Rules, want) {
		t.Errorf("Rules =\n%+v\nwant\n%+v", c.Rules, want)
	}
}

// TestExampleFile checks that files/etc/config/dpf, the file shipped as
// /etc/config/dpf, sets every option to its default and that its rule
// behaves as the shipped default must.
func TestExampleFile(t *testing.T) {
	c, err := Load(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.LANInterfaces = []string{"br-lan"}
	want.WANInterface = "wan"
	if len(c.Rules) != len(want.Rules) {
		t.Fatalf("rules = %+v", c.Rules)
	}
	for i := range c.Rules {
		if c.Rules[i].Line == 0 {
			t.Fatalf("rule %d has no line", i)
		}
		c.Rules[i].Line = 0
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("example file =\n%+v\nwant\n%+v", c, want)
	}

	// Every option of the option table appears in the file, commented
	// out (external_address) or not.
	raw, err := os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range Options() {
		if !strings.Contains(string(raw), " "+o.Name+" ") {
			t.Errorf("example file does not mention option %s (config %s)", o.Name, o.Section)
		}
	}

	lan := netip.MustParsePrefix("192.0.2.0/24")
	host := netip.MustParseAddr("192.0.2.10")
	p := &policy.Policy{Rules: c.Rules, LANPrefixes: []netip.Prefix{lan}}
	if p.Check(policy.Request{Client: host, IntAddr: host, IntPort: 80, ExtPort: 80, Proto: policy.TCP}).Allow {
		t.Error("shipped default allows port 80")
	}
	if !p.Check(policy.Request{Client: host, IntAddr: host, IntPort: 8080, ExtPort: 8080, Proto: policy.TCP}).Allow {
		t.Error("shipped default refuses port 8080")
	}
}

func TestNoRuleSectionMeansDefault(t *testing.T) {
	c, err := fromString(t, minimal+"config other\n")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Rules, policy.DefaultRules()) {
		t.Errorf("Rules = %+v", c.Rules)
	}
}

func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Load(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Load(missing) = %v", err)
	}
	path := filepath.Join(dir, "dpf")
	if err := os.WriteFile(path, []byte(minimal+"\toption max_lifetime abc\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if want := path + `:4: option max_lifetime: "abc" is not a number of seconds`; err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %s", err, want)
	}
	if err := os.WriteFile(path, []byte("config a\n\toption x 'open\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(path); err == nil || err.Error() != path+":2: unterminated ' quote" {
		t.Errorf("Load = %v", err)
	}
}

// shippedConfig is the default /etc/config/dpf that packages install.
var shippedConfig = filepath.Join("..", "..", "files", "etc", "config", "dpf")
