//go:build !linux

package store

// unmapPages is a no-op where dpfd does not run.
func unmapPages(addr uintptr, size int64) error { return nil }
