package client

// Authenticated requests (Config.Key): every PCP request is signed with
// DPF's AUTH option (package pcp, auth.go), a fresh sequence number for each
// transmission, retransmissions included, since the gateway refuses a
// number it has seen (replay protection). An answer counts as signed when
// it carries an AUTH option made with the same key for the number of one of
// this exchange's transmissions. Only signed answers can grant a mapping or
// tell the epoch; unsigned grants are ignored, so a forged answer can never
// make the client believe it holds a mapping.
//
// Some refusals cannot be signed: a gateway that does not know the option
// (UNSUPP_OPTION, or MALFORMED_OPTION from one that trips over it: dpfd
// signs its MALFORMED_OPTION answers to requests whose option it could read,
// and the client's option is always well formed, so an unsigned one means
// the option was not understood), or a NAT-PMP-only one (UNSUPP_VERSION),
// cannot sign, and
// dpfd does not sign its refusal of a request whose signature it could not
// check (NOT_AUTHORIZED: unknown key, bad MAC, wrong source address,
// replay). Those codes, and the syntax errors, are accepted unsigned: a
// forger gains nothing from them that flooding the LAN would not give it
// (the request fails, nothing is granted), and without them a client with a
// wrong key or a gateway without DPF authentication would wait for ever
// instead of saying why. Unsigned answers never feed the epoch check.
//
// With a key the client speaks PCP only: it never falls back to NAT-PMP,
// which cannot authenticate, nor to unsigned PCP.
//
// Unsolicited announcements (ANNOUNCE, NAT-PMP address notices) are not
// signed; they can only make the client ask again, with signed requests.

import (
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/dpf-router/dpf/src/pcp"
)

// ErrAuthUnsupported: Config.Key is set but the gateway does not support
// DPF's request authentication: it answered the signed request, unsigned,
// with PCP UNSUPP_OPTION (a PCP server that does not know the option, such
// as miniupnpd or dpfd with option auth 'off'), MALFORMED_OPTION (one that
// trips over it: miniupnpd 2.3 does when a DESCRIPTION option precedes it)
// or UNSUPP_VERSION (a NAT-PMP-only gateway). The client does not retry
// without the key.
var ErrAuthUnsupported = errors.New("the gateway does not support DPF authentication")

// maxSignedDesc is the longest DESCRIPTION that fits in a signed MAP
// request: 1100 - 24 (header) - 36 (MAP payload) - 4 (option header) - 52
// (AUTH option) = 984 bytes.
const maxSignedDesc = pcp.MaxMessageSize - pcp.RequestHeaderSize - pcp.MapPayloadSize - pcp.OptionHeaderSize - pcp.AuthOptionSize

// maxSentSeqs bounds the sequence numbers one exchange remembers: PCP
// retransmits without limit, but an answer to a transmission this far back
// is stale anyway.
const maxSentSeqs = 64

// signer holds a Client's key and hands out sequence numbers.
type signer struct {
	key []byte
	now func() time.Time // wall clock; tests replace it

	mu   sync.Mutex
	last uint64 // guarded by mu: the last number handed out
}

func newSigner(key []byte) (*signer, error) {
	if len(key) < pcp.MinAuthKeyLen || len(key) > pcp.MaxAuthKeyLen {
		return nil, fmt.Errorf("client: Config.Key has %d bytes, want %d to %d", len(key), pcp.MinAuthKeyLen, pcp.MaxAuthKeyLen)
	}
	return &signer{key: slices.Clone(key), now: time.Now}, nil
}

// next returns a sequence number above every one handed out before: the
// wall clock in Unix nanoseconds, so that numbers also grow across
// restarts of the program (the gateway remembers the highest it saw), or
// one above the last when the clock did not move forward.
func (s *signer) next() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := uint64(max(s.now().UnixNano(), 0))
	if n <= s.last {
		n = s.last + 1
	}
	s.last = n
	return n
}

// txAuth is the signing state of one exchange.
type txAuth struct {
	s    *signer
	sent []uint64 // numbers of this exchange's transmissions, the last maxSentSeqs
}

// newTx returns the signing state of a new exchange, or nil without a key.
func (s *signer) newTx() *txAuth {
	if s == nil {
		return nil
	}
	return &txAuth{s: s}
}

// sign signs msg, an encoded request, with a fresh sequence number.
func (t *txAuth) sign(msg []byte) ([]byte, error) {
	seq := t.s.next()
	b, err := pcp.SignRequest(msg, t.s.key, seq)
	if err != nil {
		return nil, fmt.Errorf("client: signing request: %w", err)
	}
	if len(t.sent) == maxSentSeqs {
		t.sent = slices.Delete(t.sent, 0, 1)
	}
	t.sent = append(t.sent, seq)
	return b, nil
}

// signed reports whether the answer b is signed with the key for one of
// this exchange's transmissions. Anything else counts as unsigned: no AUTH
// option, one that does not verify (made with another key, changed, or the
// request's own option echoed back in an error response, as a PCP server
// that does not know the option sends it), or one for another exchange.
// Telling those apart would gain nothing: an unsigned answer is believed
// only where any unsigned one would be.
func (t *txAuth) signed(b []byte) bool {
	a, err := pcp.VerifyResponse(b, t.s.key)
	return err == nil && slices.Contains(t.sent, a.Seq)
}

// unsignedRefusal returns the error for an unsigned refusal re, and false
// when its code must be signed to be believed (see the top of this file).
func unsignedRefusal(re *ResultError) (error, bool) {
	switch re.Code {
	case pcp.ResultUnsuppOption, pcp.ResultUnsuppVersion, pcp.ResultMalformedOption:
		return fmt.Errorf("%w: %w", ErrAuthUnsupported, re), true
	case pcp.ResultNotAuthorized:
		return fmt.Errorf("%w (an unsigned answer: the gateway did not accept this key, or refuses it from this address)", re), true
	case pcp.ResultMalformedRequest, pcp.ResultUnsuppOpcode:
		return re, true
	}
	return nil, false
}

// truncateDesc cuts s to at most n bytes at a UTF-8 character boundary.
func truncateDesc(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
