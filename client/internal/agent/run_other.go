//go:build !linux

package agent

import (
	"context"
	"errors"
)

// Run needs Linux (sock_diag, /proc, child subreapers); elsewhere it
// returns errors.ErrUnsupported.
func Run(ctx context.Context, cfg Config, argv []string) (exitCode int, err error) {
	return 126, errors.ErrUnsupported
}
