package config

import (
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// readme is the project README, whose Configuration section is the
// configuration reference.
const readme = "../../README.md"

// TestOptionTable: every option has a reload decision, names are unique
// within a section, and every option that needs a restart can be compared.
func TestOptionTable(t *testing.T) {
	seen := map[string]bool{}
	for _, o := range Options() {
		id := o.Section + "." + o.Name
		if seen[id] {
			t.Errorf("option %s is in the table twice", id)
		}
		seen[id] = true
		if o.Apply != ApplyReload && o.Apply != ApplyRestart {
			t.Errorf("option %s: no reload decision (Apply %d)", id, o.Apply)
		}
	}
	for _, o := range mainOptions {
		if o.apply == ApplyRestart && o.same == nil {
			t.Errorf("option %s needs a restart but has no comparison", o.name)
		}
		if o.set == nil {
			t.Errorf("option %s cannot be read", o.name)
		}
	}
	for _, want := range []string{"dpf.enabled", "dpf.log_level", "rule.action", "key.secret"} {
		if !seen[want] {
			t.Errorf("option %s is missing from the table", want)
		}
	}
}

// referenceOptions returns the options the configuration reference
// documents, as "section.name": the option tables of the README's
// Configuration section (each under the paragraph that names its section)
// and "`option NAME`" in its text (main section: none there), and every
// option and list line of the shipped file, commented out or not.
func referenceOptions(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	b, err := os.ReadFile(readme)
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	start := strings.Index(text, "\n## Configuration\n")
	if start < 0 {
		t.Fatal("README has no Configuration section")
	}
	text = text[start+1:]
	if end := strings.Index(text[3:], "\n## "); end >= 0 {
		text = text[:end+3]
	}
	row := regexp.MustCompile("^\\| `([a-z_]+)` \\|")
	inline := regexp.MustCompile("`option ([a-z_]+)`")
	section := ""
	for _, line := range strings.Split(text, "\n") {
		switch {
		case strings.HasPrefix(line, "`config dpf"):
			section = SectionMain
		case strings.HasPrefix(line, "`config rule"):
			section = SectionRule
		case strings.HasPrefix(line, "`config key"):
			section = SectionKey
		}
		if m := row.FindStringSubmatch(line); m != nil && section != "" {
			out[section+"."+m[1]] = "README table"
		}
		for _, m := range inline.FindAllStringSubmatch(line, -1) {
			if section != "" && section != SectionMain {
				out[section+"."+m[1]] = "README text"
			}
		}
	}
	b, err = os.ReadFile(shippedConfig)
	if err != nil {
		t.Fatal(err)
	}
	sec := regexp.MustCompile(`^#?\s*config\s+([a-z]+)`)
	opt := regexp.MustCompile(`^\s*#?\s*(?:option|list)\s+([a-z_]+)\s`)
	section = ""
	for _, line := range strings.Split(string(b), "\n") {
		if m := sec.FindStringSubmatch(line); m != nil {
			section = m[1]
			continue
		}
		if m := opt.FindStringSubmatch(line); m != nil && section != "" {
			out[section+"."+m[1]] = shippedConfig
		}
	}
	return out
}

// TestOptionsAreTheReference: the option table (which the parser reads
// from and a reload decides with) holds exactly the options the
// configuration reference documents, so that a new option needs a reload
// decision and documentation both.
func TestOptionsAreTheReference(t *testing.T) {
	ref := referenceOptions(t)
	if len(ref) < 20 {
		t.Fatalf("found only %d options in the reference: %v", len(ref), ref)
	}
	table := map[string]bool{}
	for _, o := range Options() {
		id := o.Section + "." + o.Name
		table[id] = true
		if ref[id] == "" {
			t.Errorf("option %s is read by dpfd but not documented in the README's Configuration section or %s", id, shippedConfig)
		}
	}
	for id, where := range ref {
		if !table[id] {
			t.Errorf("option %s (%s) is not in the option table", id, where)
		}
	}
}

// restartBase is a main section with every option dpfd compares for a
// restart set, so that each can be changed alone.
const restartBase = `config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan'
	option enabled '1'
	option backend 'nftables'
	option db '/etc/dpf/leases.db'
	option socket '/var/run/dpfd.sock'
	option dbus 'auto'
	option dbus_address 'unix:path=/run/dbus/system_bus_socket'
	option auth 'optional'
config key 'laptop'
	option secret '0101010101010101010101010101010101010101010101010101010101010101'
`

// TestRestartNeeded changes each option of the main section alone and
// checks what RestartNeeded says: the option's name exactly when its
// table entry says it needs a restart, nothing otherwise. Every option of
// the table needs a changed line here.
func TestRestartNeeded(t *testing.T) {
	changed := map[string]string{
		"enabled":             "option enabled '0'",
		"lan_interface":       "list lan_interface 'br-guest'",
		"wan_interface":       "option wan_interface 'pppoe-wan'",
		"external_address":    "option external_address '192.0.2.1'",
		"backend":             "option backend 'iptables'",
		"db":                  "option db '/tmp/leases.db'",
		"socket":              "option socket '/tmp/dpfd.sock'",
		"min_lifetime":        "option min_lifetime '60'",
		"max_lifetime":        "option max_lifetime '600'",
		"max_per_host":        "option max_per_host '3'",
		"max_leases":          "option max_leases '5'",
		"rate_limit":          "option rate_limit '2.5'",
		"rate_burst":          "option rate_burst '4'",
		"reserved_ports":      "option reserved_ports '8080/tcp'",
		"checkpoint_interval": "option checkpoint_interval '10'",
		"log_level":           "option log_level 'debug'",
		"dbus":                "option dbus '0'",
		"dbus_address":        "option dbus_address 'unix:path=/tmp/bus'",
		"auth":                "option auth 'required'",
	}
	old, err := fromString(t, restartBase)
	if err != nil {
		t.Fatal(err)
	}
	if got := RestartNeeded(old, old); len(got) != 0 {
		t.Fatalf("the same configuration needs a restart for %v", got)
	}
	for _, o := range mainOptions {
		line, ok := changed[o.name]
		if !ok {
			t.Errorf("option %s: no change to try (add one to this test)", o.name)
			continue
		}
		// Later lines override earlier ones; a list adds, so the
		// lan_interface case replaces the line instead.
		text := strings.Replace(restartBase, "\toption auth 'optional'\n", "\toption auth 'optional'\n\t"+line+"\n", 1)
		if o.name == "lan_interface" {
			text = strings.Replace(restartBase, "\tlist lan_interface 'br-lan'\n", "\t"+line+"\n", 1)
		}
		cur, err := fromString(t, text)
		if err != nil {
			t.Errorf("option %s: %v", o.name, err)
			continue
		}
		var want []string
		if o.apply == ApplyRestart {
			want = []string{o.name}
		}
		if got := RestartNeeded(old, cur); !slices.Equal(got, want) {
			t.Errorf("changing option %s: restart needed for %v, want %v", o.name, got, want)
		}
	}
	// Two at once, in table order; the LAN interfaces' order does not
	// matter.
	cur, err := fromString(t, strings.Replace(restartBase, "\tlist lan_interface 'br-lan'\n",
		"\tlist lan_interface 'br-guest'\n\tlist lan_interface 'br-lan'\n", 1)+"")
	if err != nil {
		t.Fatal(err)
	}
	old2, err := fromString(t, strings.Replace(restartBase, "\tlist lan_interface 'br-lan'\n",
		"\tlist lan_interface 'br-lan'\n\tlist lan_interface 'br-guest'\n", 1))
	if err != nil {
		t.Fatal(err)
	}
	if got := RestartNeeded(old2, cur); len(got) != 0 {
		t.Errorf("reordered LAN interfaces need a restart for %v", got)
	}
	cur.DB, cur.Backend = "/tmp/x.db", BackendIptables
	if got := RestartNeeded(old2, cur); !slices.Equal(got, []string{"backend", "db"}) {
		t.Errorf("backend and db changed: restart needed for %v, want [backend db]", got)
	}
}
