package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dpf-router/dpf/src/pcp"
)

const testKeyHex = "4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b4b"

func writeKeyFile(t *testing.T, content string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil { // umask aside
		t.Fatal(err)
	}
	return p
}

func TestLoadKeyFile(t *testing.T) {
	good := writeKeyFile(t, testKeyHex+"\n", 0o600)
	k, err := loadKeyFile(good)
	if err != nil || pcp.FormatAuthKey(k) != testKeyHex {
		t.Fatalf("loadKeyFile = %x, %v", k, err)
	}
	for _, mode := range []os.FileMode{0o644, 0o640, 0o604, 0o620} {
		p := writeKeyFile(t, testKeyHex, mode)
		_, err := loadKeyFile(p)
		if !errors.Is(err, errKeyFilePerm) || !strings.Contains(err.Error(), "chmod 600 "+p) {
			t.Errorf("mode %04o: %v, want a refusal saying chmod 600", mode, err)
		}
	}
	for _, content := range []string{"", testKeyHex[:40], "not a key at all", strings.Repeat("a", 2000)} {
		_, err := loadKeyFile(writeKeyFile(t, content, 0o600))
		if err == nil {
			t.Errorf("%q accepted", content)
		} else if len(content) > 8 && strings.Contains(err.Error(), content[:8]) {
			t.Errorf("error %q repeats the file's content", err)
		}
	}
	if _, err := loadKeyFile(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("missing file accepted")
	}
	if _, err := loadKeyFile(t.TempDir()); err == nil {
		t.Error("directory accepted")
	}
}

func TestGlobalKeyFile(t *testing.T) {
	tests := []struct {
		args []string
		file string
		rest []string
		err  bool
	}{
		{[]string{"expose", "tcp", "80"}, "", []string{"expose", "tcp", "80"}, false},
		{[]string{"--key-file", "/k", "expose"}, "/k", []string{"expose"}, false},
		{[]string{"-key-file=/k", "status"}, "/k", []string{"status"}, false},
		{[]string{"--key-file"}, "", nil, true},
		{[]string{"expose", "--key-file", "/k"}, "", []string{"expose", "--key-file", "/k"}, false},
	}
	for _, tt := range tests {
		file, rest, err := globalKeyFile(tt.args)
		if file != tt.file || (err != nil) != tt.err || !tt.err && strings.Join(rest, " ") != strings.Join(tt.rest, " ") {
			t.Errorf("globalKeyFile(%q) = %q, %q, %v", tt.args, file, rest, err)
		}
	}
}

// unsuppOptionGateway answers every datagram as a PCP server that does not
// know the AUTH option: UNSUPP_OPTION, echoing the request.
func unsuppOptionGateway(t *testing.T) (string, func() int) {
	t.Helper()
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	seen := make(chan int, 100)
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			signed := 0
			if _, found, _ := pcp.ParseAuth(buf[:n]); found {
				signed = 1
			}
			select {
			case seen <- signed:
			default:
			}
			pc.WriteTo(pcp.AppendErrorResponse(nil, buf[:n], pcp.ResultUnsuppOption, 1800, 7), from)
		}
	}()
	count := func() int {
		n := 0
		for {
			select {
			case s := <-seen:
				if s == 0 {
					t.Error("an unsigned request was sent")
				}
				n++
			default:
				return n
			}
		}
	}
	return pc.LocalAddr().String(), count
}

// TestExposeWithKey: the key file is read (global flag, command flag or
// environment), requests are signed, and a gateway without DPF
// authentication gives the clear error.
func TestExposeWithKey(t *testing.T) {
	t.Setenv("DPF_STATE_DIR", t.TempDir())
	gw, count := unsuppOptionGateway(t)
	good := writeKeyFile(t, testKeyHex, 0o600)
	open := writeKeyFile(t, testKeyHex, 0o644)
	for _, tc := range []struct {
		name string
		env  string
		args []string
	}{
		{"global flag", "", []string{"--key-file", good, "expose", "--gateway", gw, "--timeout", "5s", "tcp", "8080"}},
		{"command flag", "", []string{"expose", "--key-file", good, "--gateway", gw, "--timeout", "5s", "tcp", "8080"}},
		{"environment", good, []string{"expose", "--gateway", gw, "--timeout", "5s", "tcp", "8080"}},
		{"command flag over global", "", []string{"--key-file", open, "expose", "--key-file", good, "--gateway", gw, "--timeout", "5s", "tcp", "8080"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(keyFileEnv, tc.env)
			var stdout, stderr bytes.Buffer
			code := run(tc.args, &stdout, &stderr)
			if code != exitFailure || !strings.Contains(stderr.String(), "the gateway does not support DPF authentication") {
				t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
			}
			if n := count(); n != 1 {
				t.Fatalf("%d requests, want 1 signed", n)
			}
		})
	}

	// A world-readable key file is refused before anything is sent.
	t.Setenv(keyFileEnv, open)
	var stdout, stderr bytes.Buffer
	if code := run([]string{"expose", "--gateway", gw, "tcp", "8080"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "chmod 600") {
		t.Fatalf("open key file: exit %d, stderr:\n%s", code, stderr.String())
	}
	t.Setenv(keyFileEnv, good)
	stderr.Reset()
	if code := run([]string{"expose", "--protocol", "natpmp", "--gateway", gw, "tcp", "8080"}, &stdout, &stderr); code != exitUsage ||
		!strings.Contains(stderr.String(), "NAT-PMP cannot authenticate") {
		t.Fatalf("natpmp with a key: exit %d, stderr:\n%s", code, stderr.String())
	}
	if n := count(); n != 0 {
		t.Fatalf("%d requests sent for refused invocations", n)
	}
}
