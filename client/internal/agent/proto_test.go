package agent

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		line string
		want request
		ok   bool
	}{
		{"BIND tcp 8080 12345 42", request{op: opBind, proto: "tcp", port: 8080, inode: 12345, pid: 42}, true},
		{"BIND udp 65535 18446744073709551615 1", request{op: opBind, proto: "udp", port: 65535, inode: 1<<64 - 1, pid: 1}, true},
		{"CLOSE 77", request{op: opClose, inode: 77}, true},
		{"BIND sctp 80 1 1", request{}, false},
		{"BIND tcp 0 1 1", request{}, false},
		{"BIND tcp 65536 1 1", request{}, false},
		{"BIND tcp 80 0 1", request{}, false},
		{"BIND tcp 80 1 0", request{}, false},
		{"BIND tcp 80 1 -5", request{}, false},
		{"BIND tcp 80 1", request{}, false},
		{"BIND tcp 80 1 2 3", request{}, false},
		{"CLOSE", request{}, false},
		{"CLOSE x", request{}, false},
		{"bind tcp 80 1 2", request{}, false},
		{"", request{}, false},
		{"HELLO", request{}, false},
	}
	for _, tt := range tests {
		got, err := parseRequest(tt.line)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseRequest(%q) = %+v, %v; want %+v ok=%v", tt.line, got, err, tt.want, tt.ok)
		}
		if err != nil && !errors.Is(err, errBadRequest) {
			t.Errorf("parseRequest(%q) error %v is not errBadRequest", tt.line, err)
		}
	}
}

func TestReplies(t *testing.T) {
	if got := replyOK(netip.MustParseAddrPort("203.0.113.1:8080")); got != "OK 203.0.113.1:8080\n" {
		t.Errorf("replyOK = %q", got)
	}
	if got := replyErr("a\nb\r"); got != "ERR a b \n" {
		t.Errorf("replyErr = %q", got)
	}
	if got := replySkip(strings.Repeat("x", 500)); len(got) != len("SKIP \n")+200 {
		t.Errorf("replySkip is %d bytes", len(got))
	}
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"BIND tcp 8080 12345 42", "CLOSE 77", "BIND udp 1 2 3", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseRequest(line)
		if err != nil {
			return
		}
		if r.inode == 0 || (r.op == opBind && (r.port == 0 || r.pid <= 0)) {
			t.Errorf("accepted %q as %+v", line, r)
		}
	})
}
