package server

import (
	"bytes"
	"errors"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock/clocktest"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
	"github.com/dpf-router/dpf/src/policy"
)

var (
	aliceKey = bytes.Repeat([]byte{0xa1}, 32)
	bobKey   = bytes.Repeat([]byte{0xb0}, 32)
	// mallory's key is configured nowhere.
	malloryKey = bytes.Repeat([]byte{0x66}, 32)
)

// newAuthRig is newRig with the shipped rules (which let authenticated
// requests have ports below 1024) and keys alice (any source) and bob
// (hostB only).
func newAuthRig(t *testing.T, mode AuthMode) *rig {
	t.Helper()
	r := &rig{fw: leasetest.NewFirewall(), clk: clocktest.NewFake(t0), ext: wanAddr}
	r.m = lease.New(lease.Config{
		MinLifetime: 120 * time.Second,
		MaxLifetime: 24 * time.Hour,
		Policy: &policy.Policy{
			Rules:       policy.DefaultRules(),
			LANPrefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")},
		},
		Clock:    r.clk,
		Firewall: r.fw,
		Store:    leasetest.NewStore(),
	})
	r.s = New(Config{Manager: r.m, Clock: r.clk, ExternalAddr: func() netip.Addr { return r.ext }, RateLimit: 1000, RateBurst: 1000,
		AuthMode: mode, AuthKeys: testKeys()})
	return r
}

func testKeys() []Key {
	return []Key{
		{Name: "alice", Secret: aliceKey},
		{Name: "bob", Secret: bobKey, Sources: []netip.Prefix{netip.PrefixFrom(hostB.Addr(), 32)}},
	}
}

// signed signs the request pkt with key and seq.
func signed(t *testing.T, pkt, key []byte, seq uint64) []byte {
	t.Helper()
	b, err := pcp.SignRequest(pkt, key, seq)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// exchange sends pkt from src and returns the raw answer and its parse.
func (r *rig) exchange(t *testing.T, src netip.AddrPort, pkt []byte) ([]byte, pcp.Response) {
	t.Helper()
	b := r.s.Handle(pkt, src)
	if b == nil {
		t.Fatal("no response")
	}
	resp, err := pcp.ParseResponse(b)
	if err != nil {
		t.Fatalf("bad response %x: %v", b, err)
	}
	return b, resp
}

// mustBeSigned checks that b is signed with key for sequence number seq.
func mustBeSigned(t *testing.T, b, key []byte, seq uint64) {
	t.Helper()
	a, err := pcp.VerifyResponse(b, key)
	if err != nil {
		t.Fatalf("response not signed with the request's key: %v", err)
	}
	if a.Seq != seq {
		t.Fatalf("response answers sequence number %d, want %d", a.Seq, seq)
	}
}

func mustBeUnsigned(t *testing.T, b []byte) {
	t.Helper()
	if _, found, _ := pcp.ParseAuth(b); found {
		t.Fatalf("response carries an AUTH option: %x", b)
	}
}

func TestAuthOffRefusesOptionAsUnsupported(t *testing.T) {
	r := newAuthRig(t, AuthOff)
	b, resp := r.exchange(t, hostA, signed(t, pcpMap(hostA.Addr(), 1, 6, 80, 80, 3600), aliceKey, 1))
	if resp.Result != pcp.ResultUnsuppOption {
		t.Fatalf("signed request with auth off: %s, want UNSUPP_OPTION", pcp.ResultString(resp.Result))
	}
	mustBeUnsigned(t, b[:pcp.ResponseHeaderSize])
	if r.m.Len() != 0 {
		t.Fatal("mapping created")
	}
	// Unsigned requests are served as always.
	if _, resp := r.exchange(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 8080, 3600)); resp.Result != 0 {
		t.Fatalf("unsigned: %+v", resp)
	}
}

func TestAuthOptional(t *testing.T) {
	r := newAuthRig(t, AuthOptional)
	// Unsigned: as today; port 80 is not for unauthenticated requests.
	if _, resp := r.exchange(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 8080, 3600)); resp.Result != 0 {
		t.Fatalf("unsigned 8080: %+v", resp)
	}
	if _, resp := r.exchange(t, hostA, pcpMap(hostA.Addr(), 2, 6, 80, 80, 3600)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("unsigned 80: %+v", resp)
	}
	// Signed: port 80, the lease records the key, the answer is signed.
	b, resp := r.exchange(t, hostA, signed(t, pcpMap(hostA.Addr(), 2, 6, 80, 80, 3600), aliceKey, 100))
	if resp.Result != 0 || resp.Map.ExternalPort != 80 {
		t.Fatalf("signed 80: %+v", resp)
	}
	mustBeSigned(t, b, aliceKey, 100)
	if l, ok := r.m.Get(firewall.Key{Proto: firewall.TCP, ExternalPort: 80}); !ok || l.Auth != "alice" {
		t.Fatalf("lease %+v, want one with key alice", l)
	}
	// The AUTH option is not echoed as an option of the request: the
	// response has exactly one, its own, at the end.
	if _, err := pcp.ParseResponse(b[:len(b)-pcp.AuthOptionSize]); err != nil {
		t.Fatal(err)
	}

	// Refusals of requests that do not verify: NOT_AUTHORIZED, unsigned,
	// nothing changed.
	good := pcpMap(hostA.Addr(), 2, 6, 80, 0, 0) // would delete the lease
	badMAC := signed(t, good, aliceKey, 200)
	badMAC[len(badMAC)-1] ^= 1
	for _, tc := range []struct {
		name string
		src  netip.AddrPort
		pkt  []byte
	}{
		{"bad MAC", hostA, badMAC},
		{"unknown key", hostA, signed(t, good, malloryKey, 201)},
		{"key from a source it may not use", hostA, signed(t, good, bobKey, 202)},
		{"replay of the creating request", hostA, signed(t, pcpMap(hostA.Addr(), 2, 6, 80, 80, 3600), aliceKey, 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, resp := r.exchange(t, tc.src, tc.pkt)
			if resp.Result != pcp.ResultNotAuthorized {
				t.Fatalf("%s, want NOT_AUTHORIZED", pcp.ResultString(resp.Result))
			}
			mustBeUnsigned(t, b)
			if r.m.Len() != 2 {
				t.Fatalf("%d leases, want 2 (nothing deleted)", r.m.Len())
			}
		})
	}

	// The keyed lease is the key's: unsigned or other-key requests with
	// the right nonce cannot renew or delete it (signed refusal for a
	// verified key).
	if _, resp := r.exchange(t, hostA, good); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("unsigned delete of a keyed lease: %+v", resp)
	}
	r.s.SetAuth(AuthOptional, append(testKeys(), Key{Name: "carol", Secret: malloryKey}))
	b, resp = r.exchange(t, hostA, signed(t, good, malloryKey, 300))
	if resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("other key's delete: %+v", resp)
	}
	mustBeSigned(t, b, malloryKey, 300)
	b, resp = r.exchange(t, hostA, signed(t, good, aliceKey, 301))
	if resp.Result != 0 || r.m.Len() != 1 {
		t.Fatalf("delete with the lease's key: %+v, %d leases", resp, r.m.Len())
	}
	mustBeSigned(t, b, aliceKey, 301)
}

func TestAuthOptionMustBeLast(t *testing.T) {
	r := newAuthRig(t, AuthOptional)
	pkt := append(signed(t, pcpMap(hostA.Addr(), 1, 6, 80, 80, 3600), aliceKey, 1), pcp.PreferFailureOption().Code, 0, 0, 0)
	if _, resp := r.exchange(t, hostA, pkt); resp.Result != pcp.ResultMalformedOption {
		t.Fatalf("AUTH before another option: %s, want MALFORMED_OPTION", pcp.ResultString(resp.Result))
	}
}

// TestAuthResponsesDropped: a datagram with the R bit set is dropped
// whatever its AUTH option looks like; answering a malformed one would let
// a forged source address make two PCP servers answer each other for ever.
func TestAuthResponsesDropped(t *testing.T) {
	for _, mode := range []AuthMode{AuthOptional, AuthRequired} {
		r := newAuthRig(t, mode)
		good := signed(t, pcpMap(hostA.Addr(), 1, 6, 80, 80, 3600), aliceKey, 1)
		notLast := append(slices.Clone(good), pcp.PreferFailureOption().Code, 0, 0, 0)
		badLen := slices.Clone(good)
		badLen[len(badLen)-pcp.AuthOptionSize+3] = 44 // option length 44, not 48
		for name, pkt := range map[string][]byte{"well formed": good, "AUTH not last": notLast, "AUTH length 44": badLen} {
			pkt[1] |= pcp.ResponseBit
			if b := r.s.Handle(pkt, hostA); b != nil {
				t.Errorf("%v: response with %s answered: %x", mode, name, b)
			}
		}
		if r.m.Len() != 0 {
			t.Errorf("%v: a response made a mapping", mode)
		}
	}
}

func TestAuthRequired(t *testing.T) {
	r := newAuthRig(t, AuthRequired)
	// Unsigned MAP, even for a port the rules allow: NOT_AUTHORIZED.
	b, resp := r.exchange(t, hostA, pcpMap(hostA.Addr(), 1, 6, 8080, 8080, 3600))
	if resp.Result != pcp.ResultNotAuthorized || r.m.Len() != 0 {
		t.Fatalf("unsigned MAP: %+v", resp)
	}
	mustBeUnsigned(t, b)
	// Unsigned ANNOUNCE: answered (it changes nothing).
	ann := pcp.Request{Version: pcp.Version, Op: pcp.OpAnnounce, ClientAddr: hostA.Addr()}.AppendTo(nil)
	if _, resp := r.exchange(t, hostA, ann); resp.Result != 0 {
		t.Fatalf("unsigned ANNOUNCE: %+v", resp)
	}
	// Signed ANNOUNCE: answered and signed.
	b, resp = r.exchange(t, hostA, signed(t, ann, aliceKey, 5))
	if resp.Result != 0 {
		t.Fatalf("signed ANNOUNCE: %+v", resp)
	}
	mustBeSigned(t, b, aliceKey, 5)
	// Syntax errors are still answered as such.
	if b := r.s.Handle(pcpMap(hostA.Addr(), 1, 6, 8080, 8080, 3600)[:40], hostA); len(b) < 4 || b[3] != pcp.ResultMalformedRequest {
		t.Fatalf("short unsigned MAP: %x, want MALFORMED_REQUEST", b)
	}
	// Signed MAP: granted.
	b, resp = r.exchange(t, hostB, signed(t, pcpMap(hostB.Addr(), 1, 17, 5353, 0, 3600), bobKey, 6))
	if resp.Result != 0 {
		t.Fatalf("signed MAP: %+v", resp)
	}
	mustBeSigned(t, b, bobKey, 6)

	// NAT-PMP: mappings refused with result 2, the address answered.
	for _, req := range []natpmp.Request{
		{Op: natpmp.OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600},
		{Op: natpmp.OpMapUDP}, // delete all
	} {
		if resp := r.natpmp(t, hostA, req); resp.Result != natpmp.ResultNotAuthorized {
			t.Fatalf("NAT-PMP %+v: result %d, want 2", req, resp.Result)
		}
	}
	if resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpPublicAddress}); resp.Result != 0 || resp.ExternalAddr != wanAddr {
		t.Fatalf("NAT-PMP address: %+v", resp)
	}
	if r.m.Len() != 1 {
		t.Fatalf("%d leases, want bob's only", r.m.Len())
	}

	// A reload to optional lets unsigned requests in again; the replay
	// state survives it.
	if err := r.s.SetAuth(AuthOptional, testKeys()); err != nil {
		t.Fatal(err)
	}
	if resp := r.natpmp(t, hostA, natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: 8080, Lifetime: 3600}); resp.Result != 0 {
		t.Fatalf("NAT-PMP after the reload: %+v", resp)
	}
	if _, resp := r.exchange(t, hostA, signed(t, ann, aliceKey, 5)); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("replay after the reload: %+v", resp)
	}
}

func TestSetAuthRefusesBadKeys(t *testing.T) {
	r := newAuthRig(t, AuthOptional)
	for _, keys := range [][]Key{
		{{Name: "", Secret: aliceKey}},
		{{Name: "a", Secret: aliceKey[:16]}},
		{{Name: "a", Secret: aliceKey}, {Name: "a", Secret: bobKey}},
		{{Name: "a", Secret: aliceKey}, {Name: "b", Secret: aliceKey}},
		// HMAC pads keys with zero bytes: b's MAC is a's.
		{{Name: "a", Secret: aliceKey}, {Name: "b", Secret: append(slices.Clone(aliceKey), 0)}},
		{{Name: "a", Secret: append(slices.Clone(aliceKey), 0, 0)}, {Name: "b", Secret: aliceKey}},
	} {
		if err := r.s.SetAuth(AuthRequired, keys); !errors.Is(err, ErrBadKeys) {
			t.Errorf("SetAuth(%+v) = %v, want ErrBadKeys", keys, err)
		}
	}
	if r.s.AuthMode() != AuthOptional {
		t.Fatalf("mode changed to %v by a refused SetAuth", r.s.AuthMode())
	}
	for _, s := range []string{"off", "optional", "required"} {
		if m, err := ParseAuthMode(s); err != nil || m.String() != s {
			t.Errorf("ParseAuthMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseAuthMode("on"); err == nil {
		t.Error("ParseAuthMode(on) accepted")
	}
}

// TestReplayWindow: numbers above the floor and within the window are
// accepted once each, in any order; memory stays bounded and what is
// forgotten cannot come back; saved numbers are loaded as the floor.
func TestReplayWindow(t *testing.T) {
	const base = 1_800_000_000_000_000_000 // Unix nanoseconds in 2027
	id := pcp.AuthKeyID(aliceKey)
	a := newAuthenticator(map[pcp.KeyID]uint64{id: base})
	if a.accept(id, base) || a.accept(id, base-1) {
		t.Fatal("number at or below the saved one accepted")
	}
	for _, seq := range []uint64{base + 10, base + 5, base + 20} { // out of order is fine
		if !a.accept(id, seq) {
			t.Fatalf("fresh %d refused", seq)
		}
	}
	if a.accept(id, base+5) || a.accept(id, base+20) {
		t.Fatal("replay accepted")
	}
	far := uint64(base + 20 + 2*replayWindowSpan)
	if !a.accept(id, far) {
		t.Fatal("number far ahead refused")
	}
	if a.accept(id, base+15) || a.accept(id, far-replayWindowSpan) {
		t.Fatal("number below the window accepted")
	}
	if !a.accept(id, far-replayWindowSpan+1) {
		t.Fatal("oldest number inside the window refused")
	}

	// Many numbers inside one window: bounded memory; the forgotten
	// (lowest) ones stay refused.
	start := far + 1
	for i := range uint64(3 * replaySeenMax) {
		if !a.accept(id, start+i*1000) {
			t.Fatalf("number %d refused", i)
		}
	}
	w := a.windows[id]
	if len(w.seen) > replaySeenMax {
		t.Fatalf("%d numbers remembered, limit %d", len(w.seen), replaySeenMax)
	}
	if a.accept(id, start) || a.accept(id, start+1) {
		t.Fatal("forgotten number accepted again")
	}
	seqs, v1 := (&Server{auth: a}).AuthSeqs()
	if seqs[id] != start+(3*replaySeenMax-1)*1000 {
		t.Fatalf("AuthSeqs = %d", seqs[id])
	}
	a.accept(id, start+(3*replaySeenMax)*1000)
	if _, v2 := (&Server{auth: a}).AuthSeqs(); v2 == v1 {
		t.Fatal("version did not change")
	}
	// Another key has its own window.
	if !a.accept(pcp.AuthKeyID(bobKey), 1) {
		t.Fatal("other key's first number refused")
	}
}

// TestAuthSeqsRestoreRefusesOldCaptures: a request captured before a
// restart cannot be replayed to a server started with the saved numbers.
func TestAuthSeqsRestoreRefusesOldCaptures(t *testing.T) {
	r := newAuthRig(t, AuthOptional)
	capture := signed(t, pcpMap(hostA.Addr(), 1, 6, 80, 80, 3600), aliceKey, 1000)
	if _, resp := r.exchange(t, hostA, capture); resp.Result != 0 {
		t.Fatalf("%+v", resp)
	}
	seqs, _ := r.s.AuthSeqs()
	r2 := newAuthRig(t, AuthOptional)
	r2.s = New(Config{Manager: r2.m, Clock: r2.clk, ExternalAddr: func() netip.Addr { return wanAddr }, RateLimit: 1000, RateBurst: 1000,
		AuthMode: AuthOptional, AuthKeys: testKeys(), AuthSeqs: seqs})
	if _, resp := r2.exchange(t, hostA, capture); resp.Result != pcp.ResultNotAuthorized {
		t.Fatalf("replay after restart: %+v", resp)
	}
	if _, resp := r2.exchange(t, hostA, signed(t, pcpMap(hostA.Addr(), 1, 6, 80, 80, 3600), aliceKey, 1001)); resp.Result != 0 {
		t.Fatalf("fresh request after restart: %+v", resp)
	}
}
