// Package testenv holds helpers that decide whether tests needing a special
// environment can run here.
package testenv

import (
	"os"
	"testing"
)

// RequireRootEnv is the environment variable that turns RequireRoot's skip
// into a failure. CI sets it to 1 so that real-kernel tests cannot be skipped
// silently there.
const RequireRootEnv = "DPF_REQUIRE_ROOT_TESTS"

// RequireRoot skips t unless the test runs as root (it needs to create
// network namespaces and change netfilter rules). When RequireRootEnv is "1"
// it fails t instead of skipping.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv(RequireRootEnv) == "1" {
		t.Fatalf("test needs root (network namespaces, netfilter) and %s=1 forbids skipping it", RequireRootEnv)
	}
	t.Skipf("skipping: test needs root (network namespaces, netfilter); run as root, or set %s=1 to make this a failure", RequireRootEnv)
}
