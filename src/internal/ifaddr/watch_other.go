//go:build !linux

package ifaddr

import (
	"context"
	"errors"
)

// Watcher follows IPv4 address changes; only Linux has them.
type Watcher struct{}

// NewWatcher returns errors.ErrUnsupported: only Linux has rtnetlink.
func NewWatcher() (*Watcher, error) { return nil, errors.ErrUnsupported }

// Close does nothing.
func (w *Watcher) Close() error { return nil }

// Run returns errors.ErrUnsupported.
func (w *Watcher) Run(ctx context.Context, f func([]Change)) error { return errors.ErrUnsupported }
