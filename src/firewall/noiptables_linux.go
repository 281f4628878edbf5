//go:build linux && noiptables

package firewall

import "fmt"

// IPTablesBuilt says whether this build has the iptables backend (build tag
// noiptables leaves it out). Without it New never calls newIPTables, so the
// linker drops the backend and go-iptables' code, and auto detection does
// not look for an iptables binary: auto means nftables.
const IPTablesBuilt = false

// newIPTablesBackend fails with ErrNotBuilt: backend 'iptables' was asked
// for in a build without it.
func newIPTablesBackend(Config) (Backend, error) {
	return nil, fmt.Errorf("firewall: the iptables backend is %w (build tag noiptables); use backend %q or %q",
		ErrNotBuilt, KindNFTables, KindAuto)
}
