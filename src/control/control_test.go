package control

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"
)

func TestCallAndSocketMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "dpfd.sock")
	ln, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("socket mode %v (%v), want 0600", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		ln.Serve(ctx, func(_ context.Context, method string, params json.RawMessage) (any, error) {
			if method == "echo" {
				return json.RawMessage(params), nil
			}
			return nil, errors.New("no such method")
		}, nil)
		close(done)
	}()
	var out map[string]int
	if err := Call(path, "echo", map[string]int{"n": 7}, &out); err != nil || out["n"] != 7 {
		t.Fatalf("echo: %v %v", out, err)
	}
	var re *RemoteError
	if err := Call(path, "nope", nil, nil); !errors.As(err, &re) {
		t.Fatalf("unknown method: %v", err)
	}
	if _, err := Listen(path); !errors.Is(err, ErrInUse) {
		t.Fatalf("second listener: %v", err)
	}
	cancel()
	<-done
	if err := Call(path, "echo", nil, nil); !errors.Is(err, ErrNotRunning) {
		t.Fatalf("after stop: %v", err)
	}
}

func TestListenRefusesToReplaceAFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "leases.db")
	if err := os.WriteFile(path, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Listen(path); err == nil {
		t.Fatal("Listen replaced a regular file")
	}
	if b, _ := os.ReadFile(path); string(b) != "precious" {
		t.Fatal("file was changed")
	}
}
