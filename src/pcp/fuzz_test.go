package pcp

import (
	"reflect"
	"testing"
)

func FuzzParseRequest(f *testing.F) {
	f.Add(tailscaleMapRequest)
	f.Add(tailscaleAnnounceRequest)
	f.Add(mapRequestWithOptions)
	f.Add(cat(tailscaleMapRequest, optThirdPartyV4, optPreferFail, optFilterAll, optDescHi))
	f.Add(cat(tailscaleMapRequest, filterOpt(96, v4mapped), filterOpt(0, v6addr)))
	f.Add(cat(tailscaleAnnounceRequest, optDescHi, []byte{0xff, 0, 0, 1, 9, 0, 0, 0}))
	f.Add([]byte{0x00, 0x01, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseRequest(b)
		if err != nil {
			if _, ok := err.(*ParseError); !ok {
				t.Fatalf("error %T is not *ParseError", err)
			}
			return
		}
		enc := r.AppendTo(nil)
		if len(enc) > MaxMessageSize || len(enc)%4 != 0 {
			t.Fatalf("re-encoded length %d", len(enc))
		}
		r2, err := ParseRequest(enc)
		if err != nil {
			t.Fatalf("re-parse of % x (from % x): %v", enc, b, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip:\n%+v\n!=\n%+v", r2, r)
		}
	})
}

func FuzzParseResponse(f *testing.F) {
	f.Add(mapSuccessResponse)
	f.Add(announceResponse)
	f.Add(AppendErrorResponse(nil, mapRequestWithOptions, ResultNotAuthorized, 1800, 9))
	f.Add(cat(withByte(announceResponse, 1, 0x82), make([]byte, 56)))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseResponse(b)
		if err != nil {
			return
		}
		enc := r.AppendTo(nil)
		if len(enc) > MaxMessageSize || len(enc)%4 != 0 {
			t.Fatalf("re-encoded length %d", len(enc))
		}
		r2, err := ParseResponse(enc)
		if err != nil {
			t.Fatalf("re-parse of % x (from % x): %v", enc, b, err)
		}
		if !reflect.DeepEqual(r, r2) {
			t.Fatalf("round trip:\n%+v\n!=\n%+v", r2, r)
		}
	})
}
