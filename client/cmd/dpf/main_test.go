package main

import (
	"bytes"
	"net"
	"strings"
	"testing"
)

// A gateway that never answers: dpf expose gives up after --timeout with a
// message that says so, instead of retransmitting forever in silence.
func TestExposeSilentGateway(t *testing.T) {
	t.Setenv("DPF_STATE_DIR", t.TempDir())
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	var stdout, stderr bytes.Buffer
	code := run([]string{"expose", "--gateway", pc.LocalAddr().String(), "--timeout", "300ms", "tcp", "8080"}, &stdout, &stderr)
	if code != exitFailure {
		t.Fatalf("exit %d, want %d\n%s", code, exitFailure, stderr.String())
	}
	if !strings.Contains(stderr.String(), "asking "+pc.LocalAddr().String()) || !strings.Contains(stderr.String(), "no answer from the gateway within 300ms") {
		t.Fatalf("stderr:\n%s", stderr.String())
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{
		{"expose", "sctp", "80"},
		{"expose", "tcp", "0"},
		{"expose", "tcp"},
		{"run"},
		{"bogus"},
		{"expose", "--protocol", "upnp", "tcp", "8080"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != exitUsage {
			t.Errorf("%v: exit %d, want %d (%s)", args, code, exitUsage, stderr.String())
		}
	}
}
