//go:build !linux

package store

import "os"

// datasync is fsync where dpfd does not run.
func datasync(f *os.File) error { return f.Sync() }
