//go:build !linux

package firewall

// New returns ErrUnsupported: netfilter exists only on Linux.
func New(kind string, cfg Config) (Backend, error) {
	return nil, ErrUnsupported
}
