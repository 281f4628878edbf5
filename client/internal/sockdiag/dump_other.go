//go:build !linux

package sockdiag

import "errors"

// Dump is only implemented on Linux; elsewhere it returns errors.ErrUnsupported.
func Dump(req Request) ([]Socket, error) { return nil, errors.ErrUnsupported }
