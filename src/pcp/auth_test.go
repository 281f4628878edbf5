package pcp

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// Test vectors for the AUTH option, computed once with this package and
// checked against Python's hmac module (hmac.new(key, msg with the MAC
// field zeroed, hashlib.sha256)); see testdata/README.md.

// authTestKey is the key 00 01 02 ... 1f.
var authTestKey = func() []byte {
	k := make([]byte, 32)
	for i := range k {
		k[i] = byte(i)
	}
	return k
}()

// authTestKeyID is AuthKeyID(authTestKey): the first 8 bytes of
// SHA-256("dpf key id" || key).
var authTestKeyID = KeyID{0xbe, 0x95, 0x8c, 0x45, 0x2e, 0x58, 0x27, 0x3a}

// authOptMapRequest is the AUTH option SignRequest appends to
// tailscaleMapRequest with authTestKey and sequence number 0x0102030405060708.
var authOptMapRequest = []byte{
	0x7e, 0x00, 0x00, 0x30, // code 126, reserved, length 48
	0xbe, 0x95, 0x8c, 0x45, 0x2e, 0x58, 0x27, 0x3a, // key id
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // sequence number
	0xce, 0xa7, 0xd9, 0x75, 0x6d, 0x92, 0x48, 0x7f, // HMAC-SHA256
	0x29, 0x6a, 0x5b, 0x26, 0xc7, 0x31, 0x8d, 0x03,
	0xe7, 0x61, 0xb6, 0x65, 0x08, 0xdb, 0x7c, 0x43,
	0xa2, 0x72, 0xb9, 0xa3, 0x20, 0x64, 0x16, 0x7a,
}

// authOptMapResponse is the AUTH option SignResponse appends to
// mapSuccessResponse with authTestKey, answering sequence number
// 0x0102030405060708.
var authOptMapResponse = []byte{
	0x7e, 0x00, 0x00, 0x30,
	0xbe, 0x95, 0x8c, 0x45, 0x2e, 0x58, 0x27, 0x3a,
	0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08,
	0xa7, 0x5f, 0x23, 0x15, 0xf4, 0x77, 0x92, 0x77,
	0xaa, 0x2e, 0x52, 0x14, 0x4d, 0xd5, 0x8b, 0xd4,
	0x79, 0x13, 0x7c, 0xdf, 0xfd, 0x21, 0x22, 0x41,
	0x76, 0x49, 0xa4, 0x78, 0xc6, 0x29, 0xa4, 0xb2,
}

// authOptAnnounce is the AUTH option SignRequest appends to
// tailscaleAnnounceRequest with authTestKey and sequence number 1.
var authOptAnnounce = []byte{
	0x7e, 0x00, 0x00, 0x30,
	0xbe, 0x95, 0x8c, 0x45, 0x2e, 0x58, 0x27, 0x3a,
	0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01,
	0xe0, 0xbf, 0x0d, 0x31, 0x82, 0xe7, 0x21, 0xcd,
	0x3e, 0x9b, 0x35, 0x3c, 0x6c, 0x27, 0x3d, 0xca,
	0xf5, 0xdf, 0xdf, 0x1a, 0xe9, 0x74, 0x89, 0x5f,
	0x2c, 0xcf, 0x0a, 0xd2, 0xc0, 0xab, 0xb2, 0x23,
}

func TestAuthKeyID(t *testing.T) {
	if got := AuthKeyID(authTestKey); got != authTestKeyID {
		t.Fatalf("AuthKeyID = % x, want % x", got, authTestKeyID)
	}
}

func TestSignVectors(t *testing.T) {
	for _, tc := range []struct {
		name     string
		msg      []byte
		response bool
		seq      uint64
		opt      []byte
	}{
		{"map request", tailscaleMapRequest, false, 0x0102030405060708, authOptMapRequest},
		{"map response", mapSuccessResponse, true, 0x0102030405060708, authOptMapResponse},
		{"announce request", tailscaleAnnounceRequest, false, 1, authOptAnnounce},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sign := SignRequest
			if tc.response {
				sign = SignResponse
			}
			got, err := sign(tc.msg, authTestKey, tc.seq)
			if err != nil {
				t.Fatal(err)
			}
			if want := cat(tc.msg, tc.opt); !bytes.Equal(got, want) {
				t.Fatalf("signed\n% x\nwant\n% x", got, want)
			}
			a, found, err := ParseAuth(got)
			if err != nil || !found {
				t.Fatalf("ParseAuth: found %v, %v", found, err)
			}
			if a.KeyID != authTestKeyID || a.Seq != tc.seq || a.Offset != len(tc.msg) {
				t.Fatalf("ParseAuth = %+v", a)
			}
			if err := a.Verify(got, authTestKey); err != nil {
				t.Fatalf("Verify: %v", err)
			}
			// The message without the option is the original.
			if !bytes.Equal(got[:a.Offset], tc.msg) {
				t.Fatal("msg[:Offset] is not the unsigned message")
			}
		})
	}
}

func TestSignedRequestStillParses(t *testing.T) {
	// The request parser does not know the option: a server without
	// authentication answers UNSUPP_OPTION, as RFC 6887 section 7.3 asks
	// for an unknown mandatory option.
	signed := cat(tailscaleMapRequest, authOptMapRequest)
	_, err := ParseRequest(signed)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Drop || pe.Result != ResultUnsuppOption {
		t.Fatalf("ParseRequest of a signed request: %v, want UNSUPP_OPTION", err)
	}
	if _, err := ParseRequest(signed[:len(tailscaleMapRequest)]); err != nil {
		t.Fatalf("without the option: %v", err)
	}
}

func TestVerifyRejects(t *testing.T) {
	signed := cat(tailscaleMapRequest, authOptMapRequest)
	other := bytes.Repeat([]byte{0x42}, 32)
	verify := func(msg, key []byte) error {
		a, found, err := ParseAuth(msg)
		if err != nil {
			return err
		}
		if !found {
			return ErrAuthMissing
		}
		return a.Verify(msg, key)
	}
	tests := []struct {
		name string
		msg  []byte
		key  []byte
		want error
	}{
		{"other key", signed, other, ErrAuthKeyID},
		{"lifetime changed", withByte(signed, 7, 0x21), authTestKey, ErrAuthMAC},
		{"nonce changed", withByte(signed, 24, 0xff), authTestKey, ErrAuthMAC},
		{"sequence changed", withByte(signed, len(tailscaleMapRequest)+19, 9), authTestKey, ErrAuthMAC},
		{"mac changed", withByte(signed, len(signed)-1, 0), authTestKey, ErrAuthMAC},
		{"key id changed", withByte(signed, len(tailscaleMapRequest)+4, 0), authTestKey, ErrAuthKeyID},
		{"reserved byte changed", withByte(signed, len(tailscaleMapRequest)+1, 1), authTestKey, ErrAuthMAC},
		{"short key", signed, authTestKey[:31], ErrAuthKey},
		{"unsigned", tailscaleMapRequest, authTestKey, ErrAuthMissing},
		{"option added after auth", cat(signed, optPreferFail), authTestKey, ErrAuthMalformed},
		{"short option", cat(tailscaleMapRequest, []byte{OptAuth, 0, 0, 44}, make([]byte, 44)), authTestKey, ErrAuthMalformed},
		{"two options", cat(tailscaleMapRequest, authOptMapRequest, authOptMapRequest), authTestKey, ErrAuthMalformed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := verify(tt.msg, tt.key); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
}

func TestParseAuthNotFound(t *testing.T) {
	for _, msg := range [][]byte{
		nil, {2}, tailscaleMapRequest, mapRequestWithOptions, tailscaleAnnounceRequest,
		withByte(cat(tailscaleMapRequest, authOptMapRequest), 0, 1), // version 1
		withByte(cat(tailscaleMapRequest, authOptMapRequest), 1, 5), // unknown opcode
		cat(tailscaleMapRequest, authOptMapRequest)[:60+48],         // option runs past the end
		cat(tailscaleMapRequest, authOptMapRequest, make([]byte, 1100)),
	} {
		a, found, err := ParseAuth(msg)
		if found || err != nil {
			t.Errorf("ParseAuth(% x) = %+v, %v, %v; want not found", msg, a, found, err)
		}
	}
}

func TestSignRefuses(t *testing.T) {
	long := cat(tailscaleMapRequest, DescriptionOptionBytes(MaxMessageSize-len(tailscaleMapRequest)-AuthOptionSize+4))
	tests := []struct {
		name string
		msg  []byte
		resp bool
		key  []byte
		want error
	}{
		{"response as request", mapSuccessResponse, false, authTestKey, ErrAuthMessage},
		{"request as response", tailscaleMapRequest, true, authTestKey, ErrAuthMessage},
		{"signed twice", cat(tailscaleMapRequest, authOptMapRequest), false, authTestKey, ErrAuthMessage},
		{"too long", long, false, authTestKey, ErrAuthMessage},
		{"not a multiple of 4", tailscaleMapRequest[:59], false, authTestKey, ErrAuthMessage},
		{"version 0", withByte(tailscaleMapRequest, 0, 0), false, authTestKey, ErrAuthMessage},
		{"short key", tailscaleMapRequest, false, make([]byte, 16), ErrAuthKey},
		{"long key", tailscaleMapRequest, false, make([]byte, 65), ErrAuthKey},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sign := SignRequest
			if tt.resp {
				sign = SignResponse
			}
			if _, err := sign(tt.msg, tt.key, 1); !errors.Is(err, tt.want) {
				t.Fatalf("got %v, want %v", err, tt.want)
			}
		})
	}
	// The longest message that fits is signed to exactly MaxMessageSize.
	fits := cat(tailscaleMapRequest, DescriptionOptionBytes(MaxMessageSize-len(tailscaleMapRequest)-AuthOptionSize))
	out, err := SignRequest(fits, authTestKey, 1)
	if err != nil || len(out) != MaxMessageSize {
		t.Fatalf("longest message: %d bytes, %v", len(out), err)
	}
}

// DescriptionOptionBytes returns a DESCRIPTION option of exactly n bytes on
// the wire (n a multiple of 4, at least 4).
func DescriptionOptionBytes(n int) []byte {
	return appendOptions(nil, 0, []Option{DescriptionOption(strings.Repeat("d", n-OptionHeaderSize))})
}

func TestVerifyResponse(t *testing.T) {
	resp := cat(mapSuccessResponse, authOptMapResponse)
	a, err := VerifyResponse(resp, authTestKey)
	if err != nil || a.Seq != 0x0102030405060708 {
		t.Fatalf("VerifyResponse = %+v, %v", a, err)
	}
	// A signed request is not a signed response.
	if _, err := VerifyResponse(cat(tailscaleMapRequest, authOptMapRequest), authTestKey); !errors.Is(err, ErrAuthMissing) {
		t.Fatalf("request as response: %v", err)
	}
	if _, err := VerifyResponse(mapSuccessResponse, authTestKey); !errors.Is(err, ErrAuthMissing) {
		t.Fatalf("unsigned response: %v", err)
	}
	// Flipping the result code breaks the MAC.
	if _, err := VerifyResponse(withByte(resp, 3, ResultNotAuthorized), authTestKey); !errors.Is(err, ErrAuthMAC) {
		t.Fatalf("changed result: %v", err)
	}
}

func TestParseAuthKey(t *testing.T) {
	hexKey := "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
	for _, s := range []string{
		hexKey,
		"  " + strings.ToUpper(hexKey) + "\n",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
	} {
		k, err := ParseAuthKey(s)
		if err != nil || !bytes.Equal(k, authTestKey) {
			t.Errorf("ParseAuthKey(%q) = % x, %v", s, k, err)
		}
	}
	for _, s := range []string{
		"", "   ", hexKey[:62], hexKey[:63], "not a key!", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHg==",
		strings.Repeat("ab", 65),
	} {
		if k, err := ParseAuthKey(s); !errors.Is(err, ErrAuthKey) {
			t.Errorf("ParseAuthKey(%q) = % x, %v; want ErrAuthKey", s, k, err)
		} else if strings.Contains(err.Error(), s) && s != "" && strings.TrimSpace(s) != "" {
			t.Errorf("error %q repeats the key text", err)
		}
	}
	if got := FormatAuthKey(authTestKey); got != hexKey {
		t.Fatalf("FormatAuthKey = %s", got)
	}
}

// FuzzParseAuth: ParseAuth never panics; an option it finds is the last 52
// bytes of the message and re-encodes to them (reserved byte aside); the
// message without it signs and verifies again with the same sequence
// number; and Verify never accepts a MAC the test key did not make. The
// committed corpus is in testdata/fuzz/FuzzParseAuth.
func FuzzParseAuth(f *testing.F) {
	f.Add(cat(tailscaleMapRequest, authOptMapRequest))
	f.Add(cat(mapSuccessResponse, authOptMapResponse))
	f.Add(cat(tailscaleAnnounceRequest, authOptAnnounce))
	f.Add(cat(mapRequestWithOptions, authOptMapRequest))
	f.Add(cat(tailscaleMapRequest, authOptMapRequest, optPreferFail))
	f.Add(cat(tailscaleMapRequest, []byte{OptAuth, 0, 0, 44}, make([]byte, 44)))
	f.Add(tailscaleMapRequest)
	f.Fuzz(func(t *testing.T, msg []byte) {
		a, found, err := ParseAuth(msg)
		if err != nil {
			if !errors.Is(err, ErrAuthMalformed) || found {
				t.Fatalf("ParseAuth error %v (found %v)", err, found)
			}
			return
		}
		if !found {
			return
		}
		if a.Offset+AuthOptionSize != len(msg) || a.Offset < RequestHeaderSize {
			t.Fatalf("option at %d in a %d-byte message", a.Offset, len(msg))
		}
		body := msg[:a.Offset]
		want := withByte(msg, a.Offset+1, 0)
		if got := a.appendTo(append([]byte(nil), body...)); !bytes.Equal(got, want) {
			t.Fatalf("re-encoded\n% x\nwant\n% x", got, want)
		}
		if err := a.Verify(msg, authTestKey); err == nil {
			// Only possible if the input was made with the test key.
			if again, _ := sign(body, authTestKey, a.Seq, msg[1]&ResponseBit != 0); !bytes.Equal(again, want) {
				t.Fatalf("Verify accepted a MAC that signing does not produce")
			}
		}
		signed, err := sign(body, authTestKey, a.Seq, msg[1]&ResponseBit != 0)
		if err != nil {
			return // e.g. body itself has a broken option list
		}
		a2, found, err := ParseAuth(signed)
		if err != nil || !found || a2.Seq != a.Seq || a2.Offset != a.Offset {
			t.Fatalf("re-signed message: %+v, %v, %v", a2, found, err)
		}
		if err := a2.Verify(signed, authTestKey); err != nil {
			t.Fatalf("re-signed message does not verify: %v", err)
		}
	})
}

// FuzzParseAuthKey: ParseAuthKey never panics, accepts only keys of a
// usable length, and reads back what FormatAuthKey writes. The committed
// corpus is in testdata/fuzz/FuzzParseAuthKey.
func FuzzParseAuthKey(f *testing.F) {
	for _, s := range []string{
		FormatAuthKey(authTestKey), " " + strings.ToUpper(FormatAuthKey(authTestKey)) + "\n",
		"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=", "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8",
		"-_-_", "", "0", strings.Repeat("ff", 64), strings.Repeat("ff", 65),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		k, err := ParseAuthKey(s)
		if err != nil {
			if !errors.Is(err, ErrAuthKey) {
				t.Fatalf("error %v does not wrap ErrAuthKey", err)
			}
			return
		}
		if len(k) < MinAuthKeyLen || len(k) > MaxAuthKeyLen {
			t.Fatalf("accepted a %d-byte key", len(k))
		}
		back, err := ParseAuthKey(FormatAuthKey(k))
		if err != nil || !bytes.Equal(back, k) {
			t.Fatalf("round trip of % x: % x, %v", k, back, err)
		}
	})
}

// TestAuthKeysEquivalent: HMAC pads keys with zero bytes, so a key and the
// same key with zero bytes appended make the same tags (what makes
// AuthKeysEquivalent necessary), while their key ids differ.
func TestAuthKeysEquivalent(t *testing.T) {
	padded := append(bytes.Clone(authTestKey), 0, 0)
	if AuthKeyID(padded) == authTestKeyID {
		t.Fatal("padded key has the same key id")
	}
	msg, err := SignRequest(tailscaleMapRequest, authTestKey, 7)
	if err != nil {
		t.Fatal(err)
	}
	a, _, _ := ParseAuth(msg)
	if got := macOf(msg, padded, a.macOffset()); got != a.MAC {
		t.Fatal("premise: the padded key makes another MAC")
	}
	other := bytes.Clone(authTestKey)
	other[0] ^= 1
	for _, tt := range []struct {
		a, b []byte
		want bool
	}{
		{authTestKey, authTestKey, true},
		{authTestKey, padded, true},
		{padded, authTestKey, true},
		{authTestKey, other, false},
		{authTestKey, append(bytes.Clone(authTestKey), 1), false},
	} {
		if got := AuthKeysEquivalent(tt.a, tt.b); got != tt.want {
			t.Errorf("AuthKeysEquivalent(%x, %x) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}
