package policy

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrInvalidPortRange is wrapped by the error [ParsePortRange] returns for
// text that is not a port, a range of ports or "any".
var ErrInvalidPortRange = errors.New("invalid port range")

// ErrInvalidProto is wrapped by the error [ParseRuleProto] returns for an unknown
// protocol name.
var ErrInvalidProto = errors.New("invalid protocol")

// ErrInvalidAction is wrapped by the error [ParseAction] returns for text that
// is neither "allow" nor "deny".
var ErrInvalidAction = errors.New("invalid action")

// PortRange is an inclusive range of TCP or UDP ports, First <= Last.
//
// The zero value is the single port 0, not "any port": a rule must say
// [AnyPorts] to match every port. Port 0 only ever appears in PCP requests
// meaning "all ports" or "no suggestion", so a zero PortRange in a rule
// almost certainly is a bug; [PortRange.Valid] does not flag it, but
// [ParsePortRange] never produces it from "any".
type PortRange struct{ First, Last uint16 }

// AnyPorts is the range of every port, 0 through 65535. It is a variable
// only because Go has no struct constants; nothing may assign to it.
var AnyPorts = PortRange{0, 65535}

// Contains reports whether p is in the range.
func (r PortRange) Contains(p uint16) bool { return r.First <= p && p <= r.Last }

// Valid reports whether First <= Last.
func (r PortRange) Valid() bool { return r.First <= r.Last }

// IsAny reports whether r is [AnyPorts].
func (r PortRange) IsAny() bool { return r == AnyPorts }

// Len returns the number of ports in r (0 if r is not valid).
func (r PortRange) Len() int {
	if !r.Valid() {
		return 0
	}
	return int(r.Last) - int(r.First) + 1
}

// String returns "any" for [AnyPorts], "N" for a single port and "N-M"
// otherwise; [ParsePortRange] reads all three back.
func (r PortRange) String() string {
	switch {
	case r.IsAny():
		return "any"
	case r.First == r.Last:
		return strconv.Itoa(int(r.First))
	}
	return strconv.Itoa(int(r.First)) + "-" + strconv.Itoa(int(r.Last))
}

// ParsePortRange parses "any", a single port ("80") or an inclusive range
// ("1024-65535", First <= Last). Surrounding white space is ignored. Errors
// wrap [ErrInvalidPortRange].
func ParsePortRange(s string) (PortRange, error) {
	t := strings.TrimSpace(s)
	if strings.EqualFold(t, "any") {
		return AnyPorts, nil
	}
	first, last, isRange := strings.Cut(t, "-")
	a, errA := parsePort(first)
	b := a
	var errB error
	if isRange {
		b, errB = parsePort(last)
	}
	if errA != nil || errB != nil {
		return PortRange{}, fmt.Errorf("%w: %q is not a port, a range like 1024-65535 or any", ErrInvalidPortRange, s)
	}
	if a > b {
		return PortRange{}, fmt.Errorf("%w: %q: first port is above last port", ErrInvalidPortRange, s)
	}
	return PortRange{a, b}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	// Base 10 only: ParseUint rejects signs, "0x" prefixes and underscores.
	n, err := strconv.ParseUint(s, 10, 16)
	return uint16(n), err
}

// Proto is an IP protocol number as carried in PCP and NAT-PMP requests
// (IANA protocol numbers), with 0 meaning any protocol.
type Proto uint8

// Protocols.
const (
	ProtoAny Proto = 0  // in a Rule: matches every protocol; in a Request: "all protocols" (RFC 6887 section 11.1)
	TCP      Proto = 6  // RFC 9293
	UDP      Proto = 17 // RFC 768
)

// String returns "any", "tcp", "udp" or "proto-N".
func (p Proto) String() string {
	switch p {
	case ProtoAny:
		return "any"
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// ParseRuleProto parses the protocol of a rule or a reserved port,
// case-insensitively: "tcp", "udp", or one of "any", "all", "both",
// "tcp udp", "udp tcp" for [ProtoAny]. Errors wrap [ErrInvalidProto].
func ParseRuleProto(s string) (Proto, error) {
	switch strings.Join(strings.Fields(strings.ToLower(s)), " ") {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	case "any", "all", "both", "tcp udp", "udp tcp":
		return ProtoAny, nil
	}
	return 0, fmt.Errorf("%w: %q (use tcp, udp or any)", ErrInvalidProto, s)
}

// Action is what a matching rule does with a request. The zero value is
// [Deny].
type Action uint8

// Actions.
const (
	Deny Action = iota
	Allow
)

// String returns "deny" or "allow" ("action-N" for anything else).
func (a Action) String() string {
	switch a {
	case Deny:
		return "deny"
	case Allow:
		return "allow"
	}
	return "action-" + strconv.Itoa(int(a))
}

// ParseAction parses "allow" or "deny", case-insensitively. Errors wrap
// [ErrInvalidAction].
func ParseAction(s string) (Action, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "allow":
		return Allow, nil
	case "deny":
		return Deny, nil
	}
	return Deny, fmt.Errorf("%w: %q (use allow or deny)", ErrInvalidAction, s)
}
