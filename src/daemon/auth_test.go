package daemon

import (
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dpf-router/dpf/src/config"
)

// initScript is the OpenWrt init script, relative to this package.
const initScript = "../../files/etc/init.d/dpf"

// TestInitScriptAuth checks what the init script does with authentication:
// a change of option auth or of the keys applies on reload, without a
// restart. dpfd decides that, not the script: the option table says a
// reload applies them (Reload applies them: applyAuth), and the script
// keeps no list of options of its own (it restarts exactly when "dpfd
// reload" answers that a restart is needed: src/cmd/dpfd's
// TestInitScriptReload). And the runtime copy of the configuration, which
// holds the client keys, is written readable by root only.
func TestInitScriptAuth(t *testing.T) {
	b, err := os.ReadFile(initScript)
	if err != nil {
		t.Fatal(err)
	}
	script := string(b)
	if strings.Contains(script, "DPF_HOT") || regexp.MustCompile(`min_lifetime|max_lifetime|external_address`).MatchString(script) {
		t.Error("the init script keeps its own list of options a reload applies")
	}
	for _, o := range config.Options() {
		if (o.Section == config.SectionMain && o.Name == "auth" || o.Section == config.SectionKey) && o.Apply != config.ApplyReload {
			t.Errorf("option %s.%s: %v, want applied by a reload", o.Section, o.Name, o.Apply)
		}
	}
	for _, line := range strings.Split(script, "\n") {
		if strings.Contains(line, `cp "$DPF_CONFIG"`) && !strings.Contains(line, "umask 077") {
			t.Errorf("the runtime copy of the configuration is not made under umask 077: %s", strings.TrimSpace(line))
		}
	}
}

// TestReadACLsKeepKeysPrivate: the config key sections hold secrets, and
// rpcd can only grant a whole UCI package. So the ACL groups that show
// dpfd's state (LuCI's luci-app-dpf, the plugin's dpf-read and dpf-write)
// grant no UCI access; the group that does (the LuCI settings page's)
// says that reading it shows the secrets, and the settings page requires
// it.
func TestReadACLsKeepKeysPrivate(t *testing.T) {
	type grant struct {
		UCI []string `json:"uci"`
	}
	type group struct {
		Description string `json:"description"`
		Read, Write grant
	}
	groups := map[string]group{}
	for _, f := range []string{"../../luci/root/usr/share/rpcd/acl.d/luci-app-dpf.json", "../../files/usr/share/rpcd/acl.d/dpf.json"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var gs map[string]group
		if err := json.Unmarshal(b, &gs); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		for name, g := range gs {
			groups[name] = g
		}
	}
	for _, name := range []string{"luci-app-dpf", "dpf-read", "dpf-write"} {
		g, ok := groups[name]
		if !ok {
			t.Errorf("no ACL group %s", name)
		}
		if slices.Contains(g.Read.UCI, "dpf") || slices.Contains(g.Write.UCI, "dpf") {
			t.Errorf("ACL group %s grants uci dpf, whose key sections hold secrets", name)
		}
	}
	var settingsGroup string
	for name, g := range groups {
		if slices.Contains(g.Read.UCI, "dpf") {
			settingsGroup = name
			if !strings.Contains(g.Description, "secret") {
				t.Errorf("ACL group %s reads uci dpf but its description does not say that shows the key secrets: %q", name, g.Description)
			}
		}
	}
	b, err := os.ReadFile("../../luci/root/usr/share/luci/menu.d/luci-app-dpf.json")
	if err != nil {
		t.Fatal(err)
	}
	var menu map[string]struct {
		Depends struct {
			ACL []string `json:"acl"`
		} `json:"depends"`
	}
	if err := json.Unmarshal(b, &menu); err != nil {
		t.Fatal(err)
	}
	if settingsGroup == "" || !slices.Contains(menu["admin/services/dpf/settings"].Depends.ACL, settingsGroup) {
		t.Errorf("the settings page does not depend on the ACL group that grants uci dpf (%q)", settingsGroup)
	}
}
