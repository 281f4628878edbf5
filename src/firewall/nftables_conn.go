//go:build linux

package firewall

import (
	"sync"

	"github.com/google/nftables"
)

// lastingConn is the nftables backend's netlink connection: one socket for
// every call, where the library's default dials a socket (a socket, a bind
// and a seeded random source) for each call, about a tenth of a single
// change's time. After any failed call it dials a fresh socket, so that an
// error that left replies unread (the library stops reading at the first
// ENOBUFS or EPERM) cannot make a later call read them as its own.
type lastingConn struct {
	opts []nftables.ConnOption

	mu sync.Mutex // guards c and broken
	c  *nftables.Conn
	// broken: a call failed and no fresh socket could be dialled then;
	// the next call tries again before it uses c.
	broken bool
}

var _ nftConn = (*lastingConn)(nil)

func newLastingConn(opts ...nftables.ConnOption) (*lastingConn, error) {
	opts = append(opts[:len(opts):len(opts)], nftables.AsLasting())
	c, err := nftables.New(opts...)
	if err != nil {
		return nil, err
	}
	return &lastingConn{opts: opts, c: c}, nil
}

func (l *lastingConn) conn() *nftables.Conn {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.broken {
		l.redialLocked()
	}
	return l.c
}

// redialLocked replaces the socket with a fresh one, or marks the
// connection broken if none can be dialled. Callers hold mu.
func (l *lastingConn) redialLocked() {
	c, err := nftables.New(l.opts...)
	if err != nil {
		l.broken = true
		return
	}
	l.c.CloseLasting()
	l.c, l.broken = c, false
}

// check redials after a failed call and returns err.
func (l *lastingConn) check(err error) error {
	if err != nil {
		l.mu.Lock()
		l.redialLocked()
		l.mu.Unlock()
	}
	return err
}

// Close closes the socket.
func (l *lastingConn) Close() error { return l.conn().CloseLasting() }

func (l *lastingConn) AddTable(t *nftables.Table) *nftables.Table { return l.conn().AddTable(t) }
func (l *lastingConn) DelTable(t *nftables.Table)                 { l.conn().DelTable(t) }
func (l *lastingConn) AddChain(c *nftables.Chain) *nftables.Chain { return l.conn().AddChain(c) }
func (l *lastingConn) FlushChain(c *nftables.Chain)               { l.conn().FlushChain(c) }
func (l *lastingConn) AddRule(r *nftables.Rule) *nftables.Rule    { return l.conn().AddRule(r) }
func (l *lastingConn) FlushSet(s *nftables.Set)                   { l.conn().FlushSet(s) }

func (l *lastingConn) ListTablesOfFamily(f nftables.TableFamily) ([]*nftables.Table, error) {
	ts, err := l.conn().ListTablesOfFamily(f)
	return ts, l.check(err)
}

func (l *lastingConn) ListChainsOfTableFamily(f nftables.TableFamily) ([]*nftables.Chain, error) {
	cs, err := l.conn().ListChainsOfTableFamily(f)
	return cs, l.check(err)
}

func (l *lastingConn) GetRules(t *nftables.Table, c *nftables.Chain) ([]*nftables.Rule, error) {
	rs, err := l.conn().GetRules(t, c)
	return rs, l.check(err)
}

func (l *lastingConn) AddSet(s *nftables.Set, es []nftables.SetElement) error {
	return l.conn().AddSet(s, es) // queues only: no socket involved
}

func (l *lastingConn) GetSets(t *nftables.Table) ([]*nftables.Set, error) {
	ss, err := l.conn().GetSets(t)
	return ss, l.check(err)
}

func (l *lastingConn) GetSetElements(s *nftables.Set) ([]nftables.SetElement, error) {
	es, err := l.conn().GetSetElements(s)
	return es, l.check(err)
}

func (l *lastingConn) SetAddElements(s *nftables.Set, es []nftables.SetElement) error {
	return l.conn().SetAddElements(s, es)
}

func (l *lastingConn) SetDeleteElements(s *nftables.Set, es []nftables.SetElement) error {
	return l.conn().SetDeleteElements(s, es)
}

func (l *lastingConn) Flush() error { return l.check(l.conn().Flush()) }
