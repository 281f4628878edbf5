package server

// Authenticated requests: DPF's private PCP AUTH option (package pcp,
// auth.go) proves which configured key signed a request.
//
//	AuthOff       the option is not understood: ParseRequest answers it
//	              like any unknown mandatory option, UNSUPP_OPTION, so a
//	              client that insists on authentication learns that this
//	              server does not do it.
//	AuthOptional  requests without the option are served as before; with
//	              it, the request must verify (known key id, MAC, allowed
//	              source address, not a replay) and is then served as that
//	              key's, else it is refused with NOT_AUTHORIZED: a bad
//	              option never falls back to an unauthenticated request.
//	AuthRequired  as AuthOptional, and PCP requests without the option
//	              are refused with NOT_AUTHORIZED, except ANNOUNCE, which
//	              changes nothing and tells a client that the server
//	              speaks PCP. NAT-PMP cannot carry the option: its mapping
//	              requests get result 2 (Not Authorized/Refused). Its
//	              external-address request is still answered: the address
//	              is no secret (any LAN host learns it from any server on
//	              the internet) and answering it changes nothing.
//
// The answer to an authenticated request carries an AUTH option with the
// same key id and the request's sequence number, MAC'd with the key, so the
// client can tell it from a forgery. Refusals of requests that did not
// verify are not signed: the server cannot know which key, if any, the
// sender holds.
//
// Replay protection, per key id. Clients use strictly increasing sequence
// numbers (dpf uses Unix nanoseconds) and sign every transmission afresh,
// so a datagram received twice is a replay even when it is a
// retransmission. A request is accepted when its number is above the floor
// (the highest number saved by the previous run, raised when memory runs
// out), within replayWindowSpan of the highest number accepted so far, and
// not seen before. The window lets several processes of one host share a
// key: their requests may arrive slightly out of order. At most
// replaySeenMax numbers are remembered per key; when more are, the smallest
// is forgotten and becomes the floor, so memory is bounded and nothing
// forgotten can be replayed.
//
// The highest number per key is saved in the lease store by the daemon (see
// AuthSeqs) once per checkpoint interval and at shutdown, and loaded as the
// floor at start, so that a restart does not reopen old captures. Residual
// risk: after a crash or power loss, requests accepted since the last save
// (at most one checkpoint interval's worth) can each be replayed once
// after the restart, until the key's client sends a newer one. Such a
// replay can only repeat what the key's holder asked for then: re-create,
// renew or delete one of its own mappings (with its own nonce).

import (
	"errors"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// AuthMode says whether PCP requests are authenticated; see the top of
// this file. The zero value is AuthOff.
type AuthMode uint8

// Authentication modes.
const (
	AuthOff AuthMode = iota
	AuthOptional
	AuthRequired
)

var authModeNames = [...]string{AuthOff: "off", AuthOptional: "optional", AuthRequired: "required"}

// String returns "off", "optional" or "required".
func (m AuthMode) String() string {
	if int(m) < len(authModeNames) {
		return authModeNames[m]
	}
	return fmt.Sprintf("AuthMode(%d)", m)
}

// ParseAuthMode reads "off", "optional" or "required".
func ParseAuthMode(s string) (AuthMode, error) {
	for m, name := range authModeNames {
		if s == name {
			return AuthMode(m), nil
		}
	}
	return AuthOff, fmt.Errorf("authentication mode %q: want off, optional or required", s)
}

// Key is one client key.
type Key struct {
	// Name identifies the key in policy rules, leases and logs; not
	// empty, unique.
	Name string
	// Secret is the key, pcp.MinAuthKeyLen to pcp.MaxAuthKeyLen bytes;
	// no two keys may share it.
	Secret []byte
	// Sources are the prefixes the key may be used from (the request's
	// source address); empty means any.
	Sources []netip.Prefix
}

// ErrBadKeys is wrapped by the errors of SetAuth.
var ErrBadKeys = errors.New("unusable authentication keys")

// Replay window bounds; see the top of this file.
const (
	// replayWindowSpan is how far below the highest accepted sequence
	// number a request may be and still be accepted (once): 30 s in
	// Unix nanoseconds, far more than two processes of one host sharing
	// a key can drift apart between taking a number and the server
	// receiving it.
	replayWindowSpan = 30_000_000_000
	// replaySeenMax bounds the numbers remembered per key: about 50 s of
	// requests at the default rate limit of 20 per second.
	replaySeenMax = 1024
)

// authConfig is one immutable authentication setting.
type authConfig struct {
	mode AuthMode
	keys map[pcp.KeyID]*Key
}

// authenticator holds the keys and the replay state.
type authenticator struct {
	cur atomic.Pointer[authConfig]

	mu      sync.Mutex
	windows map[pcp.KeyID]*replayWindow // guarded by mu; kept across SetAuth
	version uint64                      // guarded by mu; counts changes to a window's highest
}

// replayWindow is one key's replay state.
type replayWindow struct {
	highest uint64              // highest accepted, or the saved one at start
	floor   uint64              // every number <= floor is refused
	seen    map[uint64]struct{} // accepted numbers above highest-replayWindowSpan
}

func newAuthenticator(seqs map[pcp.KeyID]uint64) *authenticator {
	a := &authenticator{windows: map[pcp.KeyID]*replayWindow{}}
	for id, seq := range seqs {
		a.windows[id] = &replayWindow{highest: seq, floor: seq, seen: map[uint64]struct{}{}}
	}
	a.cur.Store(&authConfig{mode: AuthOff})
	return a
}

// buildAuthConfig checks keys and indexes them by id.
func buildAuthConfig(mode AuthMode, keys []Key) (*authConfig, error) {
	if mode > AuthRequired {
		return nil, fmt.Errorf("%w: unknown mode %d", ErrBadKeys, mode)
	}
	c := &authConfig{mode: mode, keys: map[pcp.KeyID]*Key{}}
	names := map[string]bool{}
	for i := range keys {
		k := keys[i]
		k.Secret = append([]byte(nil), k.Secret...)
		k.Sources = append([]netip.Prefix(nil), k.Sources...)
		switch {
		case k.Name == "":
			return nil, fmt.Errorf("%w: key %d has no name", ErrBadKeys, i+1)
		case names[k.Name]:
			return nil, fmt.Errorf("%w: two keys are named %q", ErrBadKeys, k.Name)
		case len(k.Secret) < pcp.MinAuthKeyLen || len(k.Secret) > pcp.MaxAuthKeyLen:
			return nil, fmt.Errorf("%w: key %q has %d bytes, want %d to %d", ErrBadKeys, k.Name, len(k.Secret), pcp.MinAuthKeyLen, pcp.MaxAuthKeyLen)
		}
		id := pcp.AuthKeyID(k.Secret)
		if other := c.keys[id]; other != nil {
			return nil, fmt.Errorf("%w: keys %q and %q have the same secret", ErrBadKeys, other.Name, k.Name)
		}
		for _, other := range c.keys {
			if pcp.AuthKeysEquivalent(other.Secret, k.Secret) {
				// One MAC key under two names: either holder
				// could sign as the other.
				return nil, fmt.Errorf("%w: keys %q and %q differ only in trailing zero bytes, which HMAC ignores", ErrBadKeys, other.Name, k.Name)
			}
		}
		names[k.Name] = true
		c.keys[id] = &k
	}
	return c, nil
}

// SetAuth replaces the authentication mode and keys, for example after a
// configuration reload; requests being handled finish with the old ones.
// The replay state of a key id survives, so a key kept across a reload
// keeps its protection. On error (a key without a name or with a secret of
// the wrong length, two keys with one name or one secret; wrapping
// ErrBadKeys) nothing changes.
func (s *Server) SetAuth(mode AuthMode, keys []Key) error {
	c, err := buildAuthConfig(mode, keys)
	if err != nil {
		return err
	}
	s.auth.cur.Store(c)
	return nil
}

// AuthMode returns the current authentication mode.
func (s *Server) AuthMode() AuthMode { return s.auth.cur.Load().mode }

// AuthSeqs returns the highest accepted sequence number of every key id
// seen (and of those loaded from Config.AuthSeqs), for the store, and a
// version that changes whenever one of them does: the caller saves the map
// when the version differs from the one it saved last.
func (s *Server) AuthSeqs() (seqs map[pcp.KeyID]uint64, version uint64) {
	a := s.auth
	a.mu.Lock()
	defer a.mu.Unlock()
	seqs = make(map[pcp.KeyID]uint64, len(a.windows))
	for id, w := range a.windows {
		seqs[id] = max(w.highest, w.floor)
	}
	return seqs, a.version
}

// accept records seq for key id and reports whether it is new (not a
// replay).
func (a *authenticator) accept(id pcp.KeyID, seq uint64) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	w := a.windows[id]
	if w == nil {
		w = &replayWindow{seen: map[uint64]struct{}{}}
		a.windows[id] = w
	}
	if !w.acceptLocked(seq) {
		return false
	}
	a.version++
	return true
}

func (w *replayWindow) acceptLocked(seq uint64) bool {
	if seq <= w.floor {
		return false
	}
	if w.highest >= replayWindowSpan && seq <= w.highest-replayWindowSpan {
		return false
	}
	if _, dup := w.seen[seq]; dup {
		return false
	}
	w.seen[seq] = struct{}{}
	if seq > w.highest {
		w.highest = seq
		if w.highest >= replayWindowSpan {
			// Numbers now below the window are refused by the
			// window check; they need not be remembered.
			lo := w.highest - replayWindowSpan
			for s := range w.seen {
				if s <= lo {
					delete(w.seen, s)
				}
			}
		}
	}
	if len(w.seen) > replaySeenMax {
		lowest := seq
		for s := range w.seen {
			lowest = min(lowest, s)
		}
		delete(w.seen, lowest)
		w.floor = max(w.floor, lowest)
	}
	return true
}

// authFailure says why a request's AUTH option was not accepted; for logs.
type authFailure string

// verify checks a request's AUTH option a, parsed from pkt, and returns the
// key that signed it, or nil and why not.
func (s *Server) verify(c *authConfig, pkt []byte, a pcp.Auth, src netip.Addr) (*Key, authFailure) {
	k := c.keys[a.KeyID]
	if k == nil {
		return nil, authFailure(fmt.Sprintf("unknown key id %x", a.KeyID[:]))
	}
	if err := a.Verify(pkt, k.Secret); err != nil {
		return nil, authFailure(fmt.Sprintf("key %q: %v", k.Name, err))
	}
	if len(k.Sources) > 0 && !inPrefixes(k.Sources, src) {
		return nil, authFailure(fmt.Sprintf("key %q may not be used from %s", k.Name, src))
	}
	if !s.auth.accept(a.KeyID, a.Seq) {
		return nil, authFailure(fmt.Sprintf("key %q: sequence number %d replayed or too old", k.Name, a.Seq))
	}
	return k, ""
}

func inPrefixes(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handlePCP answers a PCP datagram, first handling its AUTH option as the
// mode says (see the top of this file), then answerPCP. It returns nil to
// drop.
func (s *Server) handlePCP(pkt []byte, src netip.AddrPort) (resp []byte, isErr bool) {
	c := s.auth.cur.Load()
	if c.mode == AuthOff {
		return s.answerPCP(pkt, src, "")
	}
	refuse := func(msg []byte, result uint8) ([]byte, bool) {
		return pcp.AppendErrorResponse(nil, msg, result, errorLifetime(result), s.Epoch()), true
	}
	if len(pkt) >= 2 && pkt[1]&pcp.ResponseBit != 0 {
		// A response is dropped, signed or not, well formed or not,
		// before its AUTH option is looked at: answering one (say,
		// MALFORMED_OPTION) would let a forged source make two PCP
		// servers answer each other.
		return nil, false
	}
	a, found, err := pcp.ParseAuth(pkt)
	switch {
	case err != nil:
		s.log.Debug("pcp request refused", "client", src.Addr().String(), "result", "MALFORMED_OPTION", "why", err.Error())
		return refuse(pkt, pcp.ResultMalformedOption)
	case !found && c.mode == AuthRequired:
		// Syntax errors are answered as usual; they reveal nothing
		// and tell the client what is wrong with its request.
		if req, err := pcp.ParseRequest(pkt); err == nil && req.Op != pcp.OpAnnounce {
			s.log.Info("pcp request without authentication refused (auth required)", "client", src.Addr().String())
			return refuse(pkt, pcp.ResultNotAuthorized)
		}
		return s.answerPCP(pkt, src, "")
	case !found:
		return s.answerPCP(pkt, src, "")
	}
	body := pkt[:a.Offset]
	k, why := s.verify(c, pkt, a, src.Addr())
	if k == nil {
		s.log.Info("pcp authentication failed", "client", src.Addr().String(), "why", string(why))
		return refuse(body, pcp.ResultNotAuthorized)
	}
	resp, isErr = s.answerPCP(body, src, k.Name)
	if resp == nil {
		return nil, false
	}
	signed, err := pcp.SignResponse(resp, k.Secret, a.Seq)
	if err != nil {
		// Cannot happen: the response is never longer than the
		// request, which had room for the option.
		s.log.Error("signing pcp response", "key", k.Name, "err", err)
		return resp, isErr
	}
	return signed, isErr
}

// natpmpRefused reports whether NAT-PMP request op must be refused because
// authentication is required; see the top of this file for why the
// external-address request is not.
func (s *Server) natpmpRefused(op uint8) bool {
	return op != natpmp.OpPublicAddress && s.auth.cur.Load().mode == AuthRequired
}
