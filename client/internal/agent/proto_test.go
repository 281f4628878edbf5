package agent

import (
	"errors"
	"fmt"
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
		{"BIND tcp 8080 12345 42", request{op: opBind, proto: "tcp", port: 8080, inode: 12345, pid: 42, requested: -1}, true},
		{"BIND udp 65535 18446744073709551615 1", request{op: opBind, proto: "udp", port: 65535, inode: 1<<64 - 1, pid: 1, requested: -1}, true},
		{"BIND udp 40000 7 9 0", request{op: opBind, proto: "udp", port: 40000, inode: 7, pid: 9, requested: 0}, true},
		{"BIND udp 5000 7 9 5000", request{op: opBind, proto: "udp", port: 5000, inode: 7, pid: 9, requested: 5000}, true},
		{"BIND tcp 80 1 2 80 future fields", request{op: opBind, proto: "tcp", port: 80, inode: 1, pid: 2, requested: 80}, true},
		{"BIND udp 80 1 2 65536", request{}, false},
		{"BIND udp 80 1 2 -1", request{}, false},
		{"BIND udp 80 1 2 x", request{}, false},
		{"CLOSE 77", request{op: opClose, inode: 77}, true},
		{"BIND sctp 80 1 1", request{}, false},
		{"BIND tcp 0 1 1", request{}, false},
		{"BIND tcp 65536 1 1", request{}, false},
		{"BIND tcp 80 0 1", request{}, false},
		{"BIND tcp 80 1 0", request{}, false},
		{"BIND tcp 80 1 -5", request{}, false},
		{"BIND tcp 80 1", request{}, false},
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

func TestClientBind(t *testing.T) {
	for _, tt := range []struct {
		line string
		want bool
	}{
		{"BIND udp 40000 7 9 0", true},
		{"BIND udp 40000 7 9 40000", false},
		{"BIND udp 40000 7 9", false}, // an older shim: as before
		{"BIND tcp 40000 7 9 0", false},
	} {
		r, err := parseRequest(tt.line)
		if err != nil || r.clientBind() != tt.want {
			t.Errorf("%q: clientBind %v, %v; want %v", tt.line, r.clientBind(), err, tt.want)
		}
	}
}

// formatRequest is what the shim writes for r (without the newline).
func formatRequest(r request) string {
	if r.op == opClose {
		return fmt.Sprintf("CLOSE %d", r.inode)
	}
	s := fmt.Sprintf("BIND %s %d %d %d", r.proto, r.port, r.inode, r.pid)
	if r.requested >= 0 {
		s += fmt.Sprintf(" %d", r.requested)
	}
	return s
}

func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{"BIND tcp 8080 12345 42", "CLOSE 77", "BIND udp 1 2 3", "",
		"BIND udp 40000 12345 42 0", "BIND tcp 8080 12345 42 8080", "BIND udp 53 1 1 53 extra"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		r, err := parseRequest(line)
		if err != nil {
			return
		}
		if r.inode == 0 || (r.op == opBind && (r.port == 0 || r.pid <= 0 || r.requested < -1 || r.requested > 65535)) {
			t.Errorf("accepted %q as %+v", line, r)
		}
		again, err := parseRequest(formatRequest(r))
		if err != nil || again != r {
			t.Errorf("%q: parsed %+v, formatted %q, parsed again %+v, %v", line, r, formatRequest(r), again, err)
		}
	})
}
