package pcp

// DPF request authentication: a private PCP option carrying an HMAC-SHA256
// over the whole message, so that a server can tell which configured key
// signed a request and a client can tell that a response came from the
// server that holds its key.
//
// Wire layout of the AUTH option (52 bytes with its header):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	| code OptAuth  |   reserved    |     option length = 48        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                     key id (64 bits)                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  sequence number (64 bits)                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	|          HMAC-SHA256 (256 bits) over the whole message,       |
//	|          this field taken as 32 zero bytes                    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// The option is the last one of the message, so that the MAC covers every
// other option and a receiver can remove it by cutting the message at its
// start. A response carries the key id and sequence number of the request it
// answers, with its own MAC; since the R bit and the result are part of the
// MAC'd bytes, a request's MAC never verifies as a response's.
//
// The functions here are pure: they never read a clock. Choosing sequence
// numbers (strictly increasing per key, e.g. Unix nanoseconds) and
// rejecting replays are the caller's job.

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// OptAuth is the option code of the AUTH option. RFC 6887 section 19.3
// ("PCP Options" registry) reserves codes 96-126 for Private Use in the
// mandatory-to-process range 0-127. Being mandatory is the point: a PCP
// server that does not know the option must answer UNSUPP_OPTION (RFC 6887
// section 7.3) instead of ignoring it and granting an unauthenticated
// mapping. 126 is the top of that range, the code least likely to be taken
// by other private uses, which tend to start at 96.
const OptAuth = 126

// Sizes of the AUTH option.
const (
	// AuthKeyIDSize is the size of a key id.
	AuthKeyIDSize = 8
	// AuthMACSize is the size of the HMAC-SHA256 tag.
	AuthMACSize = sha256.Size
	// authDataLen is the option data length: key id, sequence number,
	// MAC. It is a multiple of 4, so the option has no padding.
	authDataLen = AuthKeyIDSize + 8 + AuthMACSize
	// AuthOptionSize is the size of the whole option on the wire, header
	// included: what signing adds to a message.
	AuthOptionSize = OptionHeaderSize + authDataLen
)

// Key lengths accepted for signing and verifying. 32 bytes is the output
// size of SHA-256, the strength HMAC-SHA256 can use; above the 64-byte
// block size HMAC would hash the key first, which adds nothing.
const (
	MinAuthKeyLen = 32
	MaxAuthKeyLen = 64
)

// authKeyIDLabel prefixes the key when deriving its id, so that the id is
// not a hash a key could be used for elsewhere.
const authKeyIDLabel = "dpf key id"

// KeyID identifies a key on the wire without revealing it: the first 8
// bytes of SHA-256(authKeyIDLabel || key). It is an alias so that packages
// which must not import pcp (the store) can hold ids as plain [8]byte.
type KeyID = [AuthKeyIDSize]byte

// AuthKeyID returns the id of key.
func AuthKeyID(key []byte) KeyID {
	h := sha256.New()
	h.Write([]byte(authKeyIDLabel))
	h.Write(key)
	return KeyID(h.Sum(nil)[:AuthKeyIDSize])
}

// AuthKeysEquivalent reports whether keys a and b, each at most
// MaxAuthKeyLen bytes, make the same HMAC-SHA256 tags. HMAC pads a key
// shorter than SHA-256's 64-byte block with zero bytes, so two keys that
// differ only in trailing zero bytes are one key with two key ids: whoever
// holds one can sign as the other. A server must refuse such pairs as it
// refuses equal keys.
func AuthKeysEquivalent(a, b []byte) bool {
	return bytes.Equal(bytes.TrimRight(a, "\x00"), bytes.TrimRight(b, "\x00"))
}

// Errors about authentication. They are returned as is or wrapped; test
// with errors.Is.
var (
	// ErrAuthMalformed: the message has an AUTH option that is not the
	// last option, appears twice or does not have 48 bytes of data. A
	// server answers MALFORMED_OPTION.
	ErrAuthMalformed = errors.New("pcp: malformed AUTH option")
	// ErrAuthMissing: the message has no AUTH option.
	ErrAuthMissing = errors.New("pcp: no AUTH option")
	// ErrAuthKeyID: the AUTH option names another key.
	ErrAuthKeyID = errors.New("pcp: AUTH option names another key")
	// ErrAuthMAC: the MAC does not match the message.
	ErrAuthMAC = errors.New("pcp: AUTH MAC does not match")
	// ErrAuthKey: the key is shorter than MinAuthKeyLen or longer than
	// MaxAuthKeyLen bytes, or its text form cannot be read.
	ErrAuthKey = errors.New("pcp: unusable authentication key")
	// ErrAuthMessage: the message cannot be signed: not a PCP version 2
	// request (or response), not a multiple of 4 bytes, already signed,
	// or too long to take the option within MaxMessageSize.
	ErrAuthMessage = errors.New("pcp: message cannot be signed")
)

// Auth is a decoded AUTH option.
type Auth struct {
	KeyID KeyID
	// Seq is the sender's sequence number: strictly increasing per key
	// in requests; in a response, the one of the request answered.
	Seq uint64
	MAC [AuthMACSize]byte
	// Offset is where the option begins in the message it was parsed
	// from: msg[:Offset] is the message without it.
	Offset int
}

// macOffset is where the MAC begins in the message.
func (a Auth) macOffset() int { return a.Offset + OptionHeaderSize + AuthKeyIDSize + 8 }

// appendTo appends the option with a's fields (reserved byte 0).
func (a Auth) appendTo(b []byte) []byte {
	b = append(b, OptAuth, 0)
	b = binary.BigEndian.AppendUint16(b, authDataLen)
	b = append(b, a.KeyID[:]...)
	b = binary.BigEndian.AppendUint64(b, a.Seq)
	return append(b, a.MAC[:]...)
}

// opPayloadSize returns the size of the opcode payload of a PCP message
// with opcode op (R bit removed), requests and responses alike, and false
// for an opcode whose options this package cannot locate.
func opPayloadSize(op uint8) (int, bool) {
	switch op {
	case OpAnnounce:
		return 0, true
	case OpMap:
		return MapPayloadSize, true
	case OpPeer:
		return PeerPayloadSize, true
	}
	return 0, false
}

// ParseAuth finds the AUTH option of a PCP message, request or response.
// found is false, with a nil error, when there is none or when the message's
// options cannot be located: shorter than the header, not version 2, longer
// than MaxMessageSize or not a multiple of 4, an unknown opcode, a payload
// cut short, or an option running past the end before any AUTH option (the
// request parser reports those). An AUTH option that is not the last option,
// appears twice or has a data length other than 48 gives ErrAuthMalformed.
// It never panics.
func ParseAuth(msg []byte) (a Auth, found bool, err error) {
	if len(msg) < RequestHeaderSize || msg[0] != Version || len(msg) > MaxMessageSize || len(msg)%4 != 0 {
		return Auth{}, false, nil
	}
	n, ok := opPayloadSize(msg[1] &^ ResponseBit)
	if !ok || len(msg) < RequestHeaderSize+n {
		return Auth{}, false, nil
	}
	for off := RequestHeaderSize + n; off < len(msg); {
		if len(msg)-off < OptionHeaderSize {
			return Auth{}, false, nil
		}
		code := msg[off]
		dlen := int(binary.BigEndian.Uint16(msg[off+2 : off+4]))
		next := off + OptionHeaderSize + padded(dlen)
		if next > len(msg) {
			return Auth{}, false, nil
		}
		if code == OptAuth {
			switch {
			case next != len(msg):
				return Auth{}, false, fmt.Errorf("%w: not the last option", ErrAuthMalformed)
			case dlen != authDataLen:
				return Auth{}, false, fmt.Errorf("%w: length %d, want %d", ErrAuthMalformed, dlen, authDataLen)
			}
			d := msg[off+OptionHeaderSize : next]
			a = Auth{KeyID: KeyID(d[:AuthKeyIDSize]), Seq: binary.BigEndian.Uint64(d[AuthKeyIDSize:]), Offset: off}
			copy(a.MAC[:], d[AuthKeyIDSize+8:])
			return a, true, nil
		}
		off = next
	}
	return Auth{}, false, nil
}

// macOf computes the MAC of msg, whose AUTH option's MAC field starts at
// macOff, as if that field were zero.
func macOf(msg, key []byte, macOff int) [AuthMACSize]byte {
	h := hmac.New(sha256.New, key)
	h.Write(msg[:macOff])
	h.Write(make([]byte, AuthMACSize))
	h.Write(msg[macOff+AuthMACSize:])
	var out [AuthMACSize]byte
	copy(out[:], h.Sum(nil))
	return out
}

func checkKey(key []byte) error {
	if len(key) < MinAuthKeyLen || len(key) > MaxAuthKeyLen {
		return fmt.Errorf("%w: %d bytes, want %d to %d", ErrAuthKey, len(key), MinAuthKeyLen, MaxAuthKeyLen)
	}
	return nil
}

// Verify checks a, parsed from msg by ParseAuth, against key: ErrAuthKeyID
// when a names another key, ErrAuthMAC when the MAC does not match, and
// ErrAuthKey for a key of unusable length. The comparison is constant-time.
func (a Auth) Verify(msg, key []byte) error {
	if err := checkKey(key); err != nil {
		return err
	}
	if a.Offset < RequestHeaderSize || a.Offset+AuthOptionSize != len(msg) {
		return fmt.Errorf("%w: option not at the end of this message", ErrAuthMalformed)
	}
	if id := AuthKeyID(key); !hmac.Equal(id[:], a.KeyID[:]) {
		return ErrAuthKeyID
	}
	want := macOf(msg, key, a.macOffset())
	if !hmac.Equal(want[:], a.MAC[:]) {
		return ErrAuthMAC
	}
	return nil
}

// sign appends the AUTH option for key and seq to msg, a complete PCP
// version 2 message with the R bit as response says.
func sign(msg, key []byte, seq uint64, response bool) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, err
	}
	switch {
	case len(msg) < RequestHeaderSize || msg[0] != Version || len(msg)%4 != 0:
		return nil, fmt.Errorf("%w: not a PCP version 2 message", ErrAuthMessage)
	case (msg[1]&ResponseBit != 0) != response:
		return nil, fmt.Errorf("%w: R bit is %d", ErrAuthMessage, msg[1]>>7)
	case len(msg)+AuthOptionSize > MaxMessageSize:
		return nil, fmt.Errorf("%w: %d bytes leave no room for the %d-byte option", ErrAuthMessage, len(msg), AuthOptionSize)
	}
	if _, found, err := ParseAuth(msg); found || err != nil {
		return nil, fmt.Errorf("%w: already has an AUTH option", ErrAuthMessage)
	}
	a := Auth{KeyID: AuthKeyID(key), Seq: seq, Offset: len(msg)}
	out := a.appendTo(append(make([]byte, 0, len(msg)+AuthOptionSize), msg...))
	a.MAC = macOf(out, key, a.macOffset())
	copy(out[a.macOffset():], a.MAC[:])
	return out, nil
}

// SignRequest returns a copy of the encoded request msg with an AUTH
// option for key and sequence number seq appended as its last option. msg
// must be a PCP version 2 request (R bit clear) without an AUTH option, a
// multiple of 4 bytes, at most MaxMessageSize-AuthOptionSize long
// (ErrAuthMessage otherwise); key must be MinAuthKeyLen to MaxAuthKeyLen
// bytes (ErrAuthKey). The caller picks seq, strictly increasing for each
// transmission, retransmissions included.
func SignRequest(msg, key []byte, seq uint64) ([]byte, error) {
	return sign(msg, key, seq, false)
}

// SignResponse returns a copy of the encoded response msg (R bit set, no
// AUTH option) with an AUTH option for key appended; seq is the sequence
// number of the request it answers. The conditions are SignRequest's.
func SignResponse(msg, key []byte, seq uint64) ([]byte, error) {
	return sign(msg, key, seq, true)
}

// VerifyResponse checks that msg is a response (R bit set) carrying an
// AUTH option made with key, and returns the option. Errors: ErrAuthMissing
// when it has none (or is not a response), ErrAuthMalformed, ErrAuthKeyID,
// ErrAuthMAC, ErrAuthKey.
func VerifyResponse(msg, key []byte) (Auth, error) {
	a, found, err := ParseAuth(msg)
	if err != nil {
		return Auth{}, err
	}
	if !found || msg[1]&ResponseBit == 0 {
		return Auth{}, ErrAuthMissing
	}
	if err := a.Verify(msg, key); err != nil {
		return Auth{}, err
	}
	return a, nil
}

// ParseAuthKey reads a key in text form: hexadecimal (such as the 64 digits
// `dpfd genkey` prints) or base64 (standard or URL alphabet, with or without
// padding). Surrounding white space is ignored. A text of hex digits only is
// read as hex. The key must be MinAuthKeyLen to MaxAuthKeyLen bytes; errors
// wrap ErrAuthKey and say what was wrong, never the key.
func ParseAuthKey(text string) ([]byte, error) {
	s := strings.TrimSpace(text)
	if s == "" {
		return nil, fmt.Errorf("%w: empty", ErrAuthKey)
	}
	var key []byte
	if isHex(s) {
		k, err := hex.DecodeString(s)
		if err != nil {
			return nil, fmt.Errorf("%w: odd number of hex digits", ErrAuthKey)
		}
		key = k
	} else {
		for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
			if k, err := enc.DecodeString(s); err == nil {
				key = k
				break
			}
		}
		if key == nil {
			return nil, fmt.Errorf("%w: neither hex nor base64", ErrAuthKey)
		}
	}
	if len(key) < MinAuthKeyLen {
		return nil, fmt.Errorf("%w: %d bytes is too short, at least %d needed (64 hex digits)", ErrAuthKey, len(key), MinAuthKeyLen)
	}
	if len(key) > MaxAuthKeyLen {
		return nil, fmt.Errorf("%w: %d bytes is too long, at most %d", ErrAuthKey, len(key), MaxAuthKeyLen)
	}
	return key, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// FormatAuthKey returns key as lowercase hex, the form ParseAuthKey reads
// first.
func FormatAuthKey(key []byte) string { return hex.EncodeToString(key) }
