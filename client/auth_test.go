package client

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/pcp"
)

var (
	testKey  = bytes.Repeat([]byte{0x4b}, 32)
	otherKey = bytes.Repeat([]byte{0x0e}, 32)
)

// boundedCtx bounds a call that could otherwise retransmit for ever.
func boundedCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), waitFor)
	t.Cleanup(cancel)
	return ctx
}

func keyedConfig(t *testing.T, g *fakeGW, key []byte) Config {
	cfg := testConfig(t, g)
	cfg.Key = key
	return cfg
}

// TestAuthSignsEveryTransmission: with a key every request is signed,
// every retransmission with a new, higher sequence number, and the signed
// answer is taken.
func TestAuthSignsEveryTransmission(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.authKey = testKey; g.drop = 2 })
	c := newTestClient(t, keyedConfig(t, g, testKey))
	m := mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 443})
	if m.External() != ext(443) {
		t.Fatalf("External = %v", m.External())
	}
	reqs := g.requests()
	if len(reqs) != 3 {
		t.Fatalf("%d requests, want 3 (two dropped)", len(reqs))
	}
	for i, r := range reqs {
		if !r.pcp || !r.signed {
			t.Fatalf("request %d not a signed PCP request: %+v", i, r)
		}
		if i > 0 && r.seq <= reqs[i-1].seq {
			t.Fatalf("sequence numbers %d then %d: a retransmission must take a higher one", reqs[i-1].seq, r.seq)
		}
	}
	// Renewal and release are signed too.
	if err := m.Renew(boundedCtx(t)); err != nil {
		t.Fatal(err)
	}
	if err := m.Release(boundedCtx(t)); err != nil {
		t.Fatal(err)
	}
	for _, r := range g.requests()[3:] {
		if !r.signed {
			t.Fatalf("unsigned request %+v", r)
		}
	}
	if g.has(uint8(TCP), 443) {
		t.Fatal("mapping not released")
	}
}

// TestAuthForgedAnswersIgnored: answers that are unsigned, signed with
// another key, with a changed MAC or for a sequence number this exchange did
// not send are ignored, and the genuine answer after them is taken.
func TestAuthForgedAnswersIgnored(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) {
		g.authKey = testKey
		g.forge = []string{"unsigned", "badmac", "flipped", "oldseq"}
	})
	c := newTestClient(t, keyedConfig(t, g, testKey))
	m := mustMap(t, c, MapRequest{Protocol: UDP, InternalPort: 5060})
	// Each forged answer offered external port 1.
	if m.External() != ext(5060) {
		t.Fatalf("External = %v, want %v: a forged answer was taken", m.External(), ext(5060))
	}
	if n := len(g.requests()); n != 1 {
		t.Errorf("%d requests; the genuine answer came with the first", n)
	}

	// Forged grants alone are never taken: the exchange runs until the
	// context ends.
	g2 := newTestGW(t)
	g2.set(func(g *fakeGW) {
		g.authKey = testKey
		g.forge = []string{"unsigned", "badmac", "flipped", "oldseq"}
		g.forgeOnly = true
	})
	c2 := newTestClient(t, keyedConfig(t, g2, testKey))
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	if m, err := c2.Map(ctx, MapRequest{Protocol: UDP, InternalPort: 5061}); !errors.Is(err, ErrGatewayUnreachable) {
		t.Fatalf("Map with only forged answers = %v, %v; want ErrGatewayUnreachable", m, err)
	}
	if n := len(g2.requests()); n < 2 {
		t.Fatalf("%d requests: the client stopped retransmitting", n)
	}
}

// TestAuthWrongKey: the gateway's unsigned NOT_AUTHORIZED ends the request
// at once, with a message saying that the key was not accepted.
func TestAuthWrongKey(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.authKey = otherKey })
	c := newTestClient(t, keyedConfig(t, g, testKey))
	_, err := c.Map(boundedCtx(t), MapRequest{Protocol: TCP, InternalPort: 22})
	var re *ResultError
	if !errors.Is(err, ErrNotAuthorized) || !errors.As(err, &re) || !strings.Contains(err.Error(), "did not accept this key") {
		t.Fatalf("Map = %v, want NOT_AUTHORIZED saying the key was not accepted", err)
	}
	if len(g.requests()) != 1 {
		t.Fatalf("%d requests, want 1", len(g.requests()))
	}
}

// TestAuthUnsupported: a PCP gateway without DPF authentication answers
// UNSUPP_OPTION and a NAT-PMP-only one UNSUPP_VERSION; either gives
// ErrAuthUnsupported, and the client sends nothing unsigned and no NAT-PMP.
func TestAuthUnsupported(t *testing.T) {
	for _, natpmpOnly := range []bool{false, true} {
		name := "pcp"
		if natpmpOnly {
			name = "natpmp-only"
		}
		t.Run(name, func(t *testing.T) {
			g := newTestGW(t)
			g.set(func(g *fakeGW) { g.natpmpOnly = natpmpOnly })
			c := newTestClient(t, keyedConfig(t, g, testKey))
			_, err := c.Map(boundedCtx(t), MapRequest{Protocol: TCP, InternalPort: 8080})
			if !errors.Is(err, ErrAuthUnsupported) {
				t.Fatalf("Map = %v, want ErrAuthUnsupported", err)
			}
			if !strings.Contains(err.Error(), "the gateway does not support DPF authentication") {
				t.Fatalf("message %q", err)
			}
			if p, err := c.Protocol(boundedCtx(t)); err != nil || p != PCP {
				t.Fatalf("Protocol = %q, %v; with a key it is PCP, unprobed", p, err)
			}
			if _, err := c.ExternalAddr(boundedCtx(t)); !errors.Is(err, ErrAuthUnsupported) {
				t.Fatalf("ExternalAddr = %v, want ErrAuthUnsupported", err)
			}
			for _, r := range g.requests() {
				if !r.pcp || !r.signed {
					t.Fatalf("request %+v: with a key only signed PCP may be sent", r)
				}
			}
			if g.has(uint8(TCP), 8080) {
				t.Fatal("the gateway holds a mapping")
			}
		})
	}
}

func TestAuthConfig(t *testing.T) {
	g := newTestGW(t)
	for _, cfg := range []Config{
		{Key: testKey[:31]},
		{Key: bytes.Repeat([]byte{1}, 65)},
		{Key: testKey, Force: "natpmp"},
	} {
		if _, err := New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
	// New copies the key.
	key := bytes.Clone(testKey)
	g.set(func(g *fakeGW) { g.authKey = testKey })
	c := newTestClient(t, keyedConfig(t, g, key))
	key[0] ^= 0xff
	if _, err := c.Map(boundedCtx(t), MapRequest{Protocol: TCP, InternalPort: 8443}); err != nil {
		t.Fatalf("Map after the caller changed its key slice: %v", err)
	}
	// With a key the protocol is PCP without a probe.
	n := len(g.requests())
	if p, err := c.Protocol(boundedCtx(t)); err != nil || p != PCP || len(g.requests()) != n {
		t.Fatalf("Protocol = %q, %v after %d requests", p, err, len(g.requests())-n)
	}
}

// TestAuthDescriptionFits: a description too long to fit beside the AUTH
// option is cut so that the signed request stays within 1100 bytes.
func TestAuthDescriptionFits(t *testing.T) {
	g := newTestGW(t)
	g.set(func(g *fakeGW) { g.authKey = testKey })
	c := newTestClient(t, keyedConfig(t, g, testKey))
	desc := strings.Repeat("é", pcp.MaxDescriptionLen) // 2 bytes each
	mustMap(t, c, MapRequest{Protocol: TCP, InternalPort: 8000, Description: desc})
	r := g.requests()[0]
	if r.size > pcp.MaxMessageSize || !r.signed {
		t.Fatalf("request of %d bytes, signed %v", r.size, r.signed)
	}
	if len(r.desc) != maxSignedDesc || !strings.HasPrefix(desc, r.desc) {
		t.Fatalf("description of %d bytes, want %d", len(r.desc), maxSignedDesc)
	}
}

func TestSignerNext(t *testing.T) {
	s, err := newSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_800_000_000, 0)
	s.now = func() time.Time { return now }
	a, b := s.next(), s.next()
	if a != uint64(now.UnixNano()) || b != a+1 {
		t.Fatalf("numbers %d, %d", a, b)
	}
	now = now.Add(-time.Hour) // the clock stepped back
	if c := s.next(); c != b+1 {
		t.Fatalf("after a step back: %d, want %d", c, b+1)
	}
	now = now.Add(2 * time.Hour)
	if d := s.next(); d != uint64(now.UnixNano()) {
		t.Fatalf("after the clock moved on: %d", d)
	}
}

func TestUnsignedRefusal(t *testing.T) {
	for code, want := range map[uint8]error{
		pcp.ResultUnsuppOption:     ErrAuthUnsupported,
		pcp.ResultMalformedOption:  ErrAuthUnsupported,
		pcp.ResultUnsuppVersion:    ErrAuthUnsupported,
		pcp.ResultNotAuthorized:    ErrNotAuthorized,
		pcp.ResultMalformedRequest: nil,
	} {
		re := &ResultError{Protocol: PCP, Op: pcp.OpMap, Code: code}
		err, ok := unsignedRefusal(re)
		if !ok || (want != nil && !errors.Is(err, want)) || !errors.As(err, new(*ResultError)) {
			t.Errorf("%s: %v, %v; want a refusal matching %v", pcp.ResultString(code), err, ok, want)
		}
	}
	for _, code := range []uint8{pcp.ResultSuccess, pcp.ResultNoResources, pcp.ResultUserExQuota, pcp.ResultNetworkFailure,
		pcp.ResultCannotProvideExternal, pcp.ResultAddressMismatch, pcp.ResultUnsuppProtocol} {
		if err, ok := unsignedRefusal(&ResultError{Protocol: PCP, Code: code}); ok {
			t.Errorf("%s believed unsigned: %v", pcp.ResultString(code), err)
		}
	}
}
