package client

import "time"

// epochRule selects which protocol's state-loss test epochTracker applies.
type epochRule uint8

const (
	// rulePCP is RFC 6887 section 8.5.
	rulePCP epochRule = iota
	// ruleNATPMP is RFC 6886 section 3.6.
	ruleNATPMP
)

// epochTracker detects that a gateway lost its mapping state by comparing
// the epoch (seconds since the gateway's state began) in each response with
// the previous one and with the client's own clock. It is a pure value with
// no locking; the Client guards it.
//
// The zero value has seen nothing; its first observation never reports
// loss.
type epochTracker struct {
	valid  bool
	server uint32    // Sprev: the epoch in the previous response
	client time.Time // Cprev: when the client received it
}

// observe records the epoch server received at client time now and reports
// whether, compared with the previous observation, it shows state loss.
// Loss or not, the new observation becomes the reference for the next one,
// as both RFCs ask.
//
// PCP (RFC 6887 section 8.5), with Sdelta = Scurr - Sprev and Cdelta =
// Ccurr - Cprev in seconds: loss if Scurr < Sprev - 1, or Cdelta + 2 <
// Sdelta - Sdelta/16 (the server's clock ran much faster than ours), or
// Sdelta + 2 < Cdelta - Cdelta/16 (it ran much slower, so it restarted).
//
// NAT-PMP (RFC 6886 section 3.6): loss if Scurr is more than 2 seconds below
// the conservative estimate Sprev + 7/8 Cdelta.
//
// A client clock that went backwards counts as Cdelta 0.
func (e *epochTracker) observe(server uint32, now time.Time, rule epochRule) bool {
	if !e.valid {
		*e = epochTracker{valid: true, server: server, client: now}
		return false
	}
	cdelta := max(now.Sub(e.client).Seconds(), 0)
	scurr, sprev := float64(server), float64(e.server)
	e.server, e.client = server, now

	if rule == ruleNATPMP {
		return scurr+2 < sprev+cdelta*7/8
	}
	if scurr < sprev-1 {
		return true
	}
	sdelta := scurr - sprev
	return cdelta+2 < sdelta-sdelta/16 || sdelta+2 < cdelta-cdelta/16
}

// reset forgets the previous observation, for a new gateway or protocol.
func (e *epochTracker) reset() { *e = epochTracker{} }
