// Package lease keeps DPF's port mappings: who holds which external port, for
// which internal address and port, until when.
//
// A [Manager] is the single owner of the lease table. It checks every request
// against the policy, quotas and free ports, makes the change durable in the
// store and installs it in the firewall before it reports success, renews
// and deletes leases, and expires them with one goroutine. Time comes from an
// injected [clock.Clock] so that tests never sleep.
package lease

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
)

// Origin says which protocol created a lease.
type Origin string

// Origins of leases.
const (
	OriginPCP    Origin = "pcp"
	OriginNATPMP Origin = "natpmp"
)

// Key identifies a lease: its protocol and external port.
type Key = firewall.Key

// Lease is one granted port mapping.
type Lease struct {
	Proto        firewall.Proto
	ExternalPort uint16
	InternalAddr netip.Addr
	InternalPort uint16
	// Client is the host that asked for the mapping; it differs from
	// InternalAddr only for PCP THIRD_PARTY requests.
	Client netip.Addr
	Origin Origin
	// Nonce is the PCP mapping nonce; all zero for NAT-PMP leases.
	Nonce [12]byte
	// Auth is the name of the key that authenticated the request that
	// created the lease (DPF's PCP AUTH option), "" when it was not
	// authenticated. Only requests authenticated by the same key (or, for
	// "", unauthenticated ones) may renew or delete it.
	Auth        string
	Description string
	Filters     []firewall.Filter
	// Lifetime is the lifetime granted by the last request.
	Lifetime time.Duration
	// Created is when the lease was first granted (wall clock).
	Created time.Time
	// Renewed is when the lease was last granted or renewed (wall clock).
	Renewed time.Time
	// Expires is when the lease lapses. In leases handed out by the
	// Manager it is an absolute wall-clock time; internally the Manager
	// keeps a monotonic deadline, so wall-clock jumps do not shorten or
	// stretch a lease.
	Expires time.Time
}

// Key returns the lease's identity.
func (l *Lease) Key() Key { return Key{Proto: l.Proto, ExternalPort: l.ExternalPort} }

// Pinhole returns the firewall pinhole that implements the lease.
func (l *Lease) Pinhole() firewall.Pinhole {
	return firewall.Pinhole{
		Proto:        l.Proto,
		ExternalPort: l.ExternalPort,
		InternalAddr: l.InternalAddr,
		InternalPort: l.InternalPort,
		Filters:      slices.Clone(l.Filters),
	}
}

// Errors returned by the Manager. The protocol server maps each to a PCP
// and a NAT-PMP result code; they are wrapped with details, so test them
// with errors.Is.
var (
	// ErrNotAuthorized: the nonce does not match the mapping's, or the
	// mapping belongs to another protocol, client or key.
	ErrNotAuthorized = errors.New("not authorized")
	// ErrDenied: the policy refuses the mapping.
	ErrDenied = errors.New("denied by policy")
	// ErrQuota: the requesting host holds its maximum number of leases.
	ErrQuota = errors.New("per-host quota exceeded")
	// ErrNoResources: the global lease cap is reached or no external
	// port is free.
	ErrNoResources = errors.New("no resources")
	// ErrCannotProvideExternal: PREFER_FAILURE was set and the suggested
	// external port or address cannot be granted.
	ErrCannotProvideExternal = errors.New("cannot provide the suggested external port")
	// ErrUnsupportedProtocol: only TCP and UDP can be mapped.
	ErrUnsupportedProtocol = errors.New("unsupported protocol")
	// ErrBadRequest: the request is inconsistent (for example internal
	// port 0 with a non-zero lifetime).
	ErrBadRequest = errors.New("bad request")
	// ErrFailure: the firewall or the store failed; nothing was changed.
	ErrFailure = errors.New("internal failure")
	// ErrNotFound: no lease has that key.
	ErrNotFound = errors.New("no such lease")
)

// Request asks for a mapping to be created, renewed or (Lifetime 0) deleted.
type Request struct {
	Origin Origin
	Proto  firewall.Proto
	// Client is the packet's source address, InternalAddr the address the
	// mapping is for (equal unless PCP THIRD_PARTY).
	Client       netip.Addr
	InternalAddr netip.Addr
	InternalPort uint16
	// SuggestedPort is the external port the client would like; 0 for
	// any.
	SuggestedPort uint16
	// Lifetime requested; 0 deletes. It is clamped to the configured
	// bounds.
	Lifetime time.Duration
	Nonce    [12]byte
	// Auth is the name of the key that authenticated the request, ""
	// when it was not authenticated (see Lease.Auth).
	Auth string
	// Description (PCP DESCRIPTION option); replaces the stored one when
	// HasDescription is set.
	Description    string
	HasDescription bool
	// Filters replace the lease's filters (PCP FILTER option semantics:
	// a request without FILTER clears them). Ignored for NAT-PMP.
	Filters []firewall.Filter
	// PreferFailure: fail with ErrCannotProvideExternal rather than grant
	// another port than SuggestedPort.
	PreferFailure bool
}

// EventKind says what happened to a lease.
type EventKind int

// Kinds of [Event].
const (
	// Created: a new lease was granted.
	Created EventKind = iota + 1
	// Renewed: an existing lease was granted again (its expiry moved; its
	// description or filters may have changed).
	Renewed
	// Removed: the lease is gone (released, deleted, expired, or no
	// longer allowed by the policy); Event.Reason says which.
	Removed
)

func (k EventKind) String() string {
	switch k {
	case Created:
		return "created"
	case Renewed:
		return "renewed"
	case Removed:
		return "removed"
	}
	return "unknown"
}

// ReasonExpired is the Event.Reason of a lease removed because its lifetime
// ran out.
const ReasonExpired = "expired"

// Event reports one change to the lease table (see Config.OnChange).
type Event struct {
	Kind EventKind
	// Lease is the lease after the change; for Removed, as it was when it
	// was removed.
	Lease Lease
	// Reason says why a lease was removed ("expired", "released by
	// client", "deleted by administrator", ...); empty for other kinds.
	Reason string
	// Count is the number of leases in the table right after the change.
	Count int
}

// ThirdParty reports whether the request is for another host than its sender.
func (r *Request) ThirdParty() bool { return r.Client != r.InternalAddr }
