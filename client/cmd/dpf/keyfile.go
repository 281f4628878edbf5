package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/dpf-router/dpf/src/pcp"
)

// keyFileEnv names the environment variable holding the key file used when
// no --key-file is given.
const keyFileEnv = "DPF_KEY_FILE"

// maxKeyFileSize bounds what is read from a key file: a key is at most 128
// hex digits and a newline; anything much larger is not a key file.
const maxKeyFileSize = 1024

// errKeyFilePerm: the key file can be read or changed by other users.
var errKeyFilePerm = errors.New("key file is accessible by group or others")

// loadKeyFile reads a key (hex or base64, as dpfd genkey prints it) from
// path. Like ssh with private keys, it refuses a file that users other than
// its owner may read or write: the key proves who this host is to the
// router. Errors never contain the key.
func loadKeyFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("key file %s is not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o; make it private with: chmod 600 %s", errKeyFilePerm, path, perm, path)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxKeyFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	if len(data) > maxKeyFileSize {
		return nil, fmt.Errorf("key file %s is larger than %d bytes: not a key", path, maxKeyFileSize)
	}
	key, err := pcp.ParseAuthKey(string(data))
	if err != nil {
		return nil, fmt.Errorf("key file %s: %s", path, strings.TrimPrefix(err.Error(), "pcp: "))
	}
	return key, nil
}

// globalKeyFile takes a leading --key-file FILE (or --key-file=FILE, one
// or two dashes) off args, the form "dpf --key-file FILE COMMAND ...", and
// returns it with the rest. The commands' own --key-file overrides it.
func globalKeyFile(args []string) (file string, rest []string, err error) {
	for len(args) > 0 {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[0], "-"), "=")
		if !strings.HasPrefix(args[0], "-") || name != "key-file" {
			break
		}
		if !hasValue {
			if len(args) < 2 {
				return "", nil, errors.New("--key-file needs a file name")
			}
			value, args = args[1], args[1:]
		}
		file, args = value, args[1:]
	}
	return file, args, nil
}
