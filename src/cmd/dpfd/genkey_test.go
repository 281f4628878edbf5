package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/pcp"
)

// TestGenkey: the printed section, pasted into a configuration, gives a
// key whose secret is the printed key; -q prints the key alone.
func TestGenkey(t *testing.T) {
	random := bytes.Repeat([]byte{0x5a}, 64)
	var out, errb bytes.Buffer
	if code := runGenkey([]string{"laptop"}, bytes.NewReader(random), &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := strings.Repeat("5a", 32)
	text := "config dpf 'main'\n\tlist lan_interface 'br-lan'\n\toption wan_interface 'wan'\n\toption auth 'required'\n" + out.String()
	f, err := config.Parse(strings.NewReader(text), "pasted")
	if err != nil {
		t.Fatal(err)
	}
	c, err := config.FromFile(f)
	if err != nil {
		t.Fatalf("pasted output does not load: %v\n%s", err, out.String())
	}
	if len(c.Keys) != 1 || c.Keys[0].Name != "laptop" || pcp.FormatAuthKey(c.Keys[0].Secret) != want {
		t.Fatalf("keys %+v", c.Keys)
	}

	out.Reset()
	if code := runGenkey([]string{"-q"}, bytes.NewReader(random), &out, &errb); code != exitOK || out.String() != want+"\n" {
		t.Fatalf("-q: exit %d, %q", code, out.String())
	}
	for _, args := range [][]string{{"bad name"}, {"any"}, {"a", "b"}} {
		if code := runGenkey(args, bytes.NewReader(random), &out, &errb); code != exitUsage {
			t.Errorf("genkey %q: exit %d, want %d", args, code, exitUsage)
		}
	}
	// Not enough randomness is a failure, never a short key.
	if code := runGenkey(nil, bytes.NewReader(random[:10]), &out, &errb); code != exitFailure {
		t.Errorf("short random: exit %d", code)
	}
}
