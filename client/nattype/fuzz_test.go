package nattype

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// magicCookie is the fixed header field of RFC 8489 section 5 (pion does
// not export it).
const magicCookie = 0x2112A442

// FuzzChangeRequest: parsing never panics, and what parses re-encodes to
// the input with the unused bits cleared.
func FuzzChangeRequest(f *testing.F) {
	f.Add([]byte{0, 0, 0, 6})
	f.Add([]byte{0, 0, 0, 2})
	f.Fuzz(func(t *testing.T, v []byte) {
		c, err := parseChangeRequest(v)
		if err != nil {
			if len(v) == changeRequestLen {
				t.Fatalf("4-byte value %x rejected: %v", v, err)
			}
			return
		}
		want := binary.BigEndian.Uint32(v) & (changeIPFlag | changePortFlag)
		if got := c.AppendTo(nil); !bytes.Equal(got, binary.BigEndian.AppendUint32(nil, want)) {
			t.Fatalf("%x parsed to %+v, re-encoded to %x", v, c, got)
		}
	})
}

// FuzzHandle feeds arbitrary datagrams to the response handling: it must
// not panic, and an accepted answer must carry a valid mapped address and
// decode the same way again. Each input is tried as is and with its header
// patched to the magic cookie and the outstanding transaction ID, so the
// fuzzer reaches the attribute decoding.
func FuzzHandle(f *testing.F) {
	f.Add(capturedResponse)
	f.Add(capturedChangeResponse)
	from := netip.MustParseAddrPort("203.0.113.2:3478")
	f.Fuzz(func(t *testing.T, b []byte) {
		inputs := [][]byte{b}
		if len(b) >= 20 {
			p := append([]byte(nil), b...)
			binary.BigEndian.PutUint32(p[4:8], magicCookie)
			copy(p[8:20], capturedID[:])
			inputs = append(inputs, p)
		}
		for _, in := range inputs {
			tx := &transaction{id: capturedID, from: from}
			r, done, err := tx.handle(in, from)
			if !done {
				if err == nil {
					t.Fatal("not done, no reason")
				}
				continue
			}
			if err != nil {
				continue // an error response
			}
			if !r.Mapped.IsValid() {
				t.Fatalf("accepted answer without a mapped address: %+v", r)
			}
			r2, done2, err2 := (&transaction{id: capturedID, from: from}).handle(in, from)
			if !done2 || err2 != nil || r2 != r {
				t.Fatalf("second decode differs: %+v %v %v vs %+v", r2, done2, err2, r)
			}
		}
	})
}
