//go:build linux && noiptables

package firewall

import (
	"errors"
	"strings"
	"testing"
)

// TestWithoutIPTablesBackend checks that a build without the iptables
// backend refuses backend 'iptables' with an error naming the build tag
// and the alternatives, instead of failing obscurely or falling back.
func TestWithoutIPTablesBackend(t *testing.T) {
	if IPTablesBuilt {
		t.Fatal("IPTablesBuilt is true with tag noiptables")
	}
	b, err := New(KindIPTables, Config{WANInterface: "wan-test"})
	if b != nil {
		t.Errorf("New returned a backend (%T)", b)
	}
	if !errors.Is(err, ErrNotBuilt) {
		t.Fatalf("New(iptables): %v, want ErrNotBuilt", err)
	}
	for _, want := range []string{"iptables backend is not in this build", "noiptables", `"nftables"`} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %s", err, want)
		}
	}
}

// TestWithoutIPTablesDetect checks that auto detection in a build without
// the iptables backend never reports an iptables binary (this machine has
// one), so that Detect can only pick nftables, even on a system run by
// iptables-legacy.
func TestWithoutIPTablesDetect(t *testing.T) {
	env, err := gatherDetectEnv("")
	if err != nil {
		t.Fatal(err)
	}
	if env.IPTablesPresent || env.IPTablesLegacy || env.LegacyRulesPresent {
		t.Errorf("detection looked at iptables: %+v", env)
	}
}
