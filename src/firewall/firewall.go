// Package firewall installs DPF pinholes in the Linux kernel's netfilter.
//
// A pinhole is DNAT of (protocol, external port) arriving on the WAN interface
// to an internal address and port, plus a forward accept for that flow,
// optionally restricted to a set of remote peers (PCP FILTER option).
//
// Two backends implement [Backend]: nftables (netlink, through
// github.com/google/nftables) and iptables (through
// github.com/coreos/go-iptables). Both keep everything in dpfd's own tables or
// chains, and both are idempotent: adding what exists is a no-op and removing
// what is gone is not an error.
//
// The kernel state is derived from dpfd's lease store, never the other way
// round: the backends are told what must exist and make it so.
package firewall

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strconv"
	"strings"
)

// Proto is an IP protocol number as used by PCP (IANA assigned numbers).
type Proto uint8

// Protocols a pinhole can carry.
const (
	TCP Proto = 6
	UDP Proto = 17
)

// ParseProto reads the protocol of a pinhole: "tcp" or "udp", in any case.
// (A policy rule's protocol, which may also be "any", is
// policy.ParseRuleProto's.)
func ParseProto(s string) (Proto, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return TCP, nil
	case "udp":
		return UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

func (p Proto) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "proto-" + strconv.Itoa(int(p))
}

// Filter admits remote peers to a pinhole (PCP FILTER option, RFC 6887
// section 13.3). A pinhole with no filters admits every remote peer.
type Filter struct {
	// Prefix is the remote peer prefix (IPv4). A zero-length prefix admits
	// every address.
	Prefix netip.Prefix
	// Port is the remote peer port; 0 admits every port.
	Port uint16
}

// Pinhole is one port forwarding from the WAN side to an internal host.
// (Proto, ExternalPort) identifies it.
type Pinhole struct {
	Proto        Proto
	ExternalPort uint16
	InternalAddr netip.Addr // IPv4
	InternalPort uint16
	// Filters, when not empty, restrict which remote peers reach the
	// pinhole; all other inbound packets for it are dropped.
	Filters []Filter
}

// Key identifies a pinhole.
type Key struct {
	Proto        Proto
	ExternalPort uint16
}

// Key returns the pinhole's identity.
func (p Pinhole) Key() Key { return Key{p.Proto, p.ExternalPort} }

// Config configures a backend. The zero value of each field means its default.
type Config struct {
	// WANInterface is the name of the interface that inbound traffic
	// arrives on (for example "wan" or "eth0"). Required.
	WANInterface string
	// Logger receives debug messages; nil discards them.
	Logger *slog.Logger
	// NetNS, when not empty, is the name of a network namespace (a file
	// under /run/netns, as made by "ip netns add") that the backend works
	// in instead of the caller's. It exists for tests (this package's and
	// dpfd's), which run the backends in throwaway namespaces; dpfd itself
	// leaves it empty.
	NetNS string
}

// Backend is a firewall implementation. Implementations are safe for use by
// one goroutine at a time; the lease manager serialises its calls.
type Backend interface {
	// Name is "nftables" or "iptables".
	Name() string
	// Init creates dpfd's tables, chains and hooks if they are missing.
	// It is idempotent and does not touch existing pinholes.
	Init() error
	// Add installs p. If a pinhole with p's key exists with other
	// contents it is replaced. Adding what exists is a no-op.
	Add(p Pinhole) error
	// Remove removes the pinhole with key k. Removing what is absent is
	// not an error.
	Remove(k Key) error
	// Apply removes the pinholes with the keys in remove, then installs
	// add, with the meaning of Remove and Add for each, in one kernel
	// transaction where the backend can (nftables: one netlink batch;
	// iptables: one iptables-restore run), so that a burst of requests
	// costs one round trip. A key appears at most once in add. On error
	// some of the changes may have been made; every change is idempotent,
	// so the caller may retry them one by one.
	Apply(add []Pinhole, remove []Key) error
	// Sync makes the installed pinholes exactly ps: missing ones are added,
	// stale ones removed, and dpfd's tables and chains re-created if someone
	// deleted them. With nftables it is one atomic batch.
	Sync(ps []Pinhole) error
	// Installed reads back the pinholes the kernel holds (through netlink
	// or the iptables tool), for reconciliation checks and tests.
	Installed() ([]Pinhole, error)
	// Cleanup removes everything dpfd ever added (its tables, chains and
	// the jumps into them) and nothing else. Removing what is absent is
	// not an error.
	Cleanup() error
	// Close releases the backend's resources; it does not remove rules.
	Close() error
}

// ErrUnsupported is returned by New when the requested backend cannot work on
// this system (for example no netfilter support, or no iptables binary).
var ErrUnsupported = errors.New("firewall backend not supported on this system")
