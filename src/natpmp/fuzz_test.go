package natpmp

import "testing"

func FuzzParseRequest(f *testing.F) {
	f.Add(captureNatpmpcTCP)
	f.Add([]byte{0x00, 0x00})
	f.Add([]byte{0x00, 0x01, 0, 0, 0x13, 0x88, 0, 0, 0, 0, 0x1c, 0x20})
	f.Add([]byte{0x00, 0x81})
	f.Add([]byte{0x02, 0x01, 0x00, 0x00})
	f.Add([]byte{0x00, 0x07})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			return
		}
		enc := r.AppendTo(nil)
		r2, err := ParseRequest(enc)
		if err != nil {
			t.Fatalf("re-parse of % x (from % x): %v", enc, b, err)
		}
		if r2 != r {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add([]byte{0x00, 0x80, 0x00, 0x00, 0, 0, 0, 1, 192, 0, 2, 1})
	f.Add([]byte{0x00, 0x82, 0x00, 0x00, 0, 0, 0, 7, 0x1f, 0x90, 0x1f, 0x90, 0, 0, 0x0e, 0x10})
	f.Add([]byte{0x00, 0x85, 0x00, 0x05, 0, 0, 0, 7, 0, 0, 0, 0, 0, 0, 0, 0})
	f.Add([]byte{0x00, 0x80, 0x00, 0x03, 0, 0, 0, 1, 1, 2, 3, 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		enc := r.AppendTo(nil)
		r2, err := ParseResponse(enc)
		if err != nil {
			t.Fatalf("re-parse of % x (from % x): %v", enc, b, err)
		}
		if r2 != r {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}
