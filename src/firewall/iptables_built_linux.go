//go:build linux && !noiptables

package firewall

// IPTablesBuilt says whether this build has the iptables backend (build tag
// noiptables leaves it out).
const IPTablesBuilt = true

// newIPTablesBackend returns the iptables backend, or nil and an error
// (never a typed nil pointer inside the interface).
func newIPTablesBackend(cfg Config) (Backend, error) {
	b, err := newIPTables(cfg, nil)
	if err != nil {
		return nil, err
	}
	return b, nil
}
