// Package agenttest provides a fake agent.Mapper that records its calls and
// talks to no router.
package agenttest

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/dpf-router/dpf/client/internal/agent"
)

// ExternalAddr is the address the fake's pinholes report (TEST-NET-3).
var ExternalAddr = netip.MustParseAddr("203.0.113.1")

// Call is one recorded Map or Release.
type Call struct {
	Op    string // "map" or "release"
	Proto string
	Addr  netip.Addr // as passed to Map: zero for a wildcard bind
	Port  uint16
	Done  time.Time // when the call returned
	Err   error
}

// Mapper is a fake agent.Mapper. Its zero value grants every request at
// once with external port = local port. It is safe for concurrent use.
type Mapper struct {
	// Delay, if set, makes each Map wait this long (or until its context
	// ends) before it answers.
	Delay time.Duration
	// Fail, if set, is asked before each grant; a non-nil error fails Map.
	Fail func(proto string, port uint16) error

	mu      sync.Mutex
	calls   []Call
	open    map[pinholeKey]int // open pinholes
	changed chan struct{}      // closed and replaced on every call
}

var _ agent.Mapper = (*Mapper)(nil)

type pinholeKey struct {
	proto string
	addr  netip.Addr
	port  uint16
}

// Map implements agent.Mapper.
func (m *Mapper) Map(ctx context.Context, proto string, addr netip.Addr, port uint16) (agent.Pinhole, error) {
	var err error
	if m.Delay > 0 {
		t := time.NewTimer(m.Delay)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			err = ctx.Err()
		}
	}
	if err == nil && m.Fail != nil {
		err = m.Fail(proto, port)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.recordLocked(Call{Op: "map", Proto: proto, Addr: addr, Port: port, Done: time.Now(), Err: err})
	if err != nil {
		return nil, err
	}
	if m.open == nil {
		m.open = map[pinholeKey]int{}
	}
	k := pinholeKey{proto, addr, port}
	m.open[k]++
	return &pinhole{m: m, key: k}, nil
}

func (m *Mapper) recordLocked(c Call) {
	m.calls = append(m.calls, c)
	if m.changed != nil {
		close(m.changed)
		m.changed = nil
	}
}

// Calls returns the calls so far.
func (m *Mapper) Calls() []Call {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]Call(nil), m.calls...)
}

// CallsFor returns the calls for one protocol and port, any address.
func (m *Mapper) CallsFor(proto string, port uint16) []Call {
	var out []Call
	for _, c := range m.Calls() {
		if c.Proto == proto && c.Port == port {
			out = append(out, c)
		}
	}
	return out
}

// Open reports how many granted pinholes for proto and port, for any
// address, are not yet released (the agent should hold at most one per
// address).
func (m *Mapper) Open(proto string, port uint16) int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for k, c := range m.open {
		if k.proto == proto && k.port == port {
			n += c
		}
	}
	return n
}

// Wait waits until cond holds or ctx ends; cond is checked after every call.
func (m *Mapper) Wait(ctx context.Context, cond func() bool) error {
	for {
		m.mu.Lock()
		if m.changed == nil {
			m.changed = make(chan struct{})
		}
		ch := m.changed
		m.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

type pinhole struct {
	m        *Mapper
	key      pinholeKey
	released bool // guarded by m.mu
}

func (p *pinhole) External() netip.AddrPort { return netip.AddrPortFrom(ExternalAddr, p.key.port) }

// ErrReleasedTwice is what a second Release of one pinhole returns.
var ErrReleasedTwice = errors.New("agenttest: pinhole released twice")

func (p *pinhole) Release(ctx context.Context) error {
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	c := Call{Op: "release", Proto: p.key.proto, Addr: p.key.addr, Port: p.key.port, Done: time.Now()}
	if p.released {
		c.Err = ErrReleasedTwice
		p.m.recordLocked(c)
		return ErrReleasedTwice
	}
	p.released = true
	p.m.open[p.key]--
	p.m.recordLocked(c)
	return nil
}
