package listening

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func readCapture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "proc", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestParseCaptured parses tables captured from a little-endian (x86_64)
// kernel; testdata/README.md says which sockets were open.
func TestParseCaptured(t *testing.T) {
	any4, any6 := "0.0.0.0:0", "[::]:0"
	want := map[string][]Entry{
		"tcp": {
			{ap("203.0.113.1:8080"), ap(any4), StateListen},
			{ap("127.0.0.1:5000"), ap(any4), StateListen},
			{ap("0.0.0.0:22"), ap(any4), StateListen},
			{ap("127.0.0.1:5000"), ap("127.0.0.1:56968"), 0x06}, // TIME_WAIT
		},
		"tcp6": {
			{ap("[2001:db8::1]:8443"), ap(any6), StateListen},
			{ap("[::]:443"), ap(any6), StateListen},
		},
		"udp": {
			{ap("203.0.113.1:40000"), ap("203.0.113.1:53"), StateEstablished},
			{ap("0.0.0.0:53"), ap(any4), StateClose},
			{ap("203.0.113.1:68"), ap(any4), StateClose},
		},
		"udp6": {
			{ap("[::]:5353"), ap(any6), StateClose},
			{ap("[::ffff:203.0.113.1]:123"), ap(any6), StateClose},
		},
	}
	for name, w := range want {
		got, err := Parse(readCapture(t, name), binary.LittleEndian)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s:\n got %v\nwant %v", name, got, w)
		}
	}
}

// TestParseBigEndian: on a big-endian router (MIPS) each address word is
// printed in network order.
func TestParseBigEndian(t *testing.T) {
	tab := "  sl  local_address rem_address   st\n" +
		"   0: CB007101:0016 00000000:0000 0A 00000000:00000000\n"
	got, err := Parse([]byte(tab), binary.BigEndian)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Local != ap("203.0.113.1:22") {
		t.Fatalf("%v", got)
	}
	tab6 := "  sl  local_address                         remote_address                        st\n" +
		"   0: 20010DB8000000000000000000000001:01BB 00000000000000000000000000000000:0000 0A\n"
	got, err = Parse([]byte(tab6), binary.BigEndian)
	if err != nil || len(got) != 1 || got[0].Local != ap("[2001:db8::1]:443") {
		t.Fatalf("%v %v", got, err)
	}
}

func TestParseErrors(t *testing.T) {
	const head = "  sl  local_address rem_address   st\n"
	for _, tt := range []struct {
		in   string
		line int
	}{
		{"garbage\n", 1},
		{head + "   0: 00000000:0016 00000000:0000\n", 2},
		{head + "\n   0: 0000000:0016 00000000:0000 0A\n", 3},
		{head + "   0: 00000000-0016 00000000:0000 0A\n", 2},
		{head + "   0: 00000000:016 00000000:0000 0A\n", 2},
		{head + "   0: 0000000G:0016 00000000:0000 0A\n", 2},
		{head + "   0: 00000000:0016 00000000:0000 A\n", 2},
		{head + "   0: 00000000:0016 00000000:0000 0X\n", 2},
		{head + "   0: 00000000:0016 00000000000000000000000000000000:0000 0A\n", 2},
		{head + "   0: 00000000:+016 00000000:0000 0A\n", 2},
		{head + "   0 00000000:0016 00000000:0000 0A\n", 2},
	} {
		_, err := Parse([]byte(tt.in), binary.LittleEndian)
		if !errors.Is(err, ErrFormat) {
			t.Errorf("%q: error %v, want ErrFormat", tt.in, err)
			continue
		}
		if tt.line > 1 && !strings.Contains(err.Error(), fmt.Sprintf("line %d:", tt.line)) {
			t.Errorf("%q: %v does not name line %d", tt.in, err, tt.line)
		}
	}
	// An empty table is not an error.
	for _, in := range []string{"", head, head + "\n\n"} {
		if es, err := Parse([]byte(in), binary.LittleEndian); err != nil || len(es) != 0 {
			t.Errorf("%q: %v %v", in, es, err)
		}
	}
}

// format writes entries in the kernel's layout (the fields Parse reads,
// then some of the ones it ignores), for round trips.
func format(es []Entry, order binary.ByteOrder) []byte {
	var b strings.Builder
	b.WriteString("  sl  local_address rem_address   st tx_queue rx_queue\n")
	addr := func(a netip.AddrPort) string {
		raw := a.Addr().AsSlice()
		var s strings.Builder
		for i := 0; i < len(raw); i += 4 {
			fmt.Fprintf(&s, "%08X", order.Uint32(raw[i:]))
		}
		return fmt.Sprintf("%s:%04X", s.String(), a.Port())
	}
	for i, e := range es {
		fmt.Fprintf(&b, "%4d: %s %s %02X 00000000:00000000\n", i, addr(e.Local), addr(e.Remote), e.State)
	}
	return []byte(b.String())
}

func TestFormatRoundTrip(t *testing.T) {
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		for _, order := range []binary.ByteOrder{binary.LittleEndian, binary.BigEndian} {
			es, err := Parse(readCapture(t, name), binary.LittleEndian)
			if err != nil {
				t.Fatal(err)
			}
			again, err := Parse(format(es, order), order)
			if err != nil || !reflect.DeepEqual(again, es) {
				t.Errorf("%s %v: %v %v", name, order, again, err)
			}
		}
	}
}

// FuzzParse checks that Parse never panics, that its errors wrap ErrFormat,
// and that what it returns survives format and a second Parse unchanged.
// The committed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	for _, name := range []string{"tcp", "tcp6", "udp", "udp6"} {
		b, err := os.ReadFile(filepath.Join("testdata", "proc", name))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte(""))
	f.Add([]byte("sl\n0: 00000000:0000 00000000:0000 00\n"))
	f.Add([]byte("sl\n1: 00000000:0016 00000000000000000000000000000000:0000 0A\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		es, err := Parse(data, binary.LittleEndian)
		if err != nil {
			if !errors.Is(err, ErrFormat) {
				t.Fatalf("error %v does not wrap ErrFormat", err)
			}
			return
		}
		for _, e := range es {
			if e.Local.Addr().BitLen() != e.Remote.Addr().BitLen() || !e.Local.Addr().IsValid() {
				t.Fatalf("inconsistent entry %v", e)
			}
		}
		again, err := Parse(format(es, binary.LittleEndian), binary.LittleEndian)
		if err != nil {
			t.Fatalf("re-parse: %v", err)
		}
		if len(es) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, es) {
			t.Fatalf("round trip differs:\n%v\n%v", es, again)
		}
	})
}
