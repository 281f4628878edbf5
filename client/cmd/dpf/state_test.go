package main

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestOwnDir(t *testing.T) {
	base := t.TempDir()
	good := filepath.Join(base, "good")
	if err := os.Mkdir(good, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := ownDir(good); err != nil {
		t.Fatalf("0700 directory of ours refused: %v", err)
	}
	open := filepath.Join(base, "open")
	os.Mkdir(open, 0o700)
	os.Chmod(open, 0o777)
	if err := ownDir(open); err == nil {
		t.Fatal("world-writable directory accepted")
	}
	link := filepath.Join(base, "link")
	os.Symlink(good, link)
	if err := ownDir(link); err == nil {
		t.Fatal("symbolic link accepted as the state directory")
	}
	if os.Geteuid() == 0 {
		other := filepath.Join(base, "other")
		os.Mkdir(other, 0o700)
		os.Chown(other, 65534, 65534)
		if err := ownDir(other); err == nil {
			t.Fatal("directory owned by another user accepted")
		}
	}
}

func TestStateRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	t.Setenv("DPF_STATE_DIR", dir)
	w := newStateWriter("198.51.100.1:5351", "PCP")
	if w.path == "" {
		t.Fatal("no state file path")
	}
	exp := time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)
	w.set(stateRecord{Proto: "tcp", Internal: "198.51.100.2:8080", External: "203.0.113.1:8080", Expires: exp, Command: "expose"})
	w.set(stateRecord{Proto: "udp", Internal: "198.51.100.2:9000", External: "203.0.113.1:9000", Expires: exp, Command: "expose"})
	w.set(stateRecord{Proto: "tcp", Internal: "198.51.100.2:8080", External: "203.0.113.1:8081", Expires: exp, Command: "expose"})
	w.remove("udp", "198.51.100.2:9000")

	// A crashed dpf's half-written file and a dead process's file.
	os.WriteFile(filepath.Join(dir, "1.json"), []byte("{"), 0o600)
	dead := filepath.Join(dir, "999999999.json")
	os.WriteFile(dead, []byte(`{"pid":999999999}`), 0o600)

	states, err := readStates()
	if err != nil {
		t.Fatal(err)
	}
	var mine *stateFile
	for i := range states {
		if states[i].PID == os.Getpid() {
			mine = &states[i]
		}
	}
	if mine == nil || len(mine.Mappings) != 1 || mine.Mappings[0].External != "203.0.113.1:8081" || mine.Protocol != "PCP" {
		t.Fatalf("states: %+v", states)
	}
	if _, err := os.Stat(dead); err == nil {
		t.Fatal("state file of a dead process kept")
	}
	w.close()
	if _, err := os.Stat(w.path); err == nil {
		t.Fatal("state file left after close")
	}

	// A directory other users could write to is refused for reading.
	os.Chmod(dir, 0o777)
	if _, err := readStates(); err == nil {
		t.Fatal("readStates accepted a world-writable directory")
	}
}

func TestParseGateway(t *testing.T) {
	for in, want := range map[string]string{
		"198.51.100.1":      "198.51.100.1:5351",
		"198.51.100.1:6000": "198.51.100.1:6000",
	} {
		got, err := parseGateway(in)
		if err != nil || got.String() != want {
			t.Errorf("parseGateway(%q) = %v, %v; want %s", in, got, err, want)
		}
	}
	if _, err := parseGateway("router.lan"); err == nil {
		t.Error("a host name was accepted")
	}
}
