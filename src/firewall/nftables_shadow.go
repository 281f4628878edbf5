//go:build linux

package firewall

import "net/netip"

// nftShadow is the nftables backend's in-memory copy of what it installed,
// so that one Add or Remove costs the same at 10 pinholes as at 10,000: the
// diff is computed from one pinhole's elements, not from every element read
// back over netlink. It is pure (no I/O) and not safe for concurrent use.
// It is kept compact (about 100 bytes a pinhole) as it lives as long as the
// daemon: 10,000 pinholes must fit in a router's memory budget.
type nftShadow struct {
	// gen is the ruleset generation at which the kernel held exactly
	// pinholes.
	gen uint32
	// pinholes are the installed pinholes (validated), by key.
	pinholes map[Key]nftTarget
	// fwdRefs counts the pinholes that share each fwd_pinholes element
	// (two pinholes to one internal port share one).
	fwdRefs map[nftFwdKey]int32
}

// nftTarget is a shadowed pinhole without its key.
type nftTarget struct {
	addr    [4]byte
	port    uint16
	filters []Filter // normalized; nil for none
}

// nftFwdKey identifies a fwd_pinholes element.
type nftFwdKey struct {
	addr  [4]byte
	proto Proto
	port  uint16
}

func fwdKey(p Pinhole) nftFwdKey {
	return nftFwdKey{p.InternalAddr.As4(), p.Proto, p.InternalPort}
}

func (t nftTarget) pinhole(k Key) Pinhole {
	return Pinhole{Proto: k.Proto, ExternalPort: k.ExternalPort,
		InternalAddr: netip.AddrFrom4(t.addr), InternalPort: t.port, Filters: t.filters}
}

func target(p Pinhole) nftTarget {
	return nftTarget{addr: p.InternalAddr.As4(), port: p.InternalPort, filters: p.Filters}
}

// newNFTShadow returns the shadow of m (validated) installed at generation
// gen.
func newNFTShadow(m map[Key]Pinhole, gen uint32) *nftShadow {
	s := &nftShadow{gen: gen, pinholes: make(map[Key]nftTarget, len(m)), fwdRefs: make(map[nftFwdKey]int32, len(m))}
	for k, p := range m {
		s.pinholes[k] = target(p)
		s.fwdRefs[fwdKey(p)]++
	}
	return s
}

func (s *nftShadow) len() int { return len(s.pinholes) }

// diff returns the elements to delete and to add, per set, to go from the
// shadow to the shadow with p (validated) installed under k, or with p nil
// removed. ok is false when nothing would change.
func (s *nftShadow) diff(k Key, p *Pinhole) (del, add nftState, ok bool) {
	t, had := s.pinholes[k]
	if !had && p == nil {
		return nil, nil, false
	}
	old := t.pinhole(k)
	before, after := map[Key]Pinhole{}, map[Key]Pinhole{}
	if had {
		before[k] = old
	}
	if p != nil {
		after[k] = *p
	}
	del, add = nftDiff(nftElements(before), nftElements(after))
	// A fwd_pinholes element goes only with the last pinhole using it
	// and comes only with the first.
	if had {
		if s.fwdRefs[fwdKey(old)] > 1 {
			del[nftSetForward] = withoutElem(del[nftSetForward], nftFwdElem(old).id())
		}
	}
	if p != nil {
		if s.fwdRefs[fwdKey(*p)] > 0 {
			add[nftSetForward] = withoutElem(add[nftSetForward], nftFwdElem(*p).id())
		}
	}
	for _, es := range del {
		if len(es) > 0 {
			return del, add, true
		}
	}
	for _, es := range add {
		if len(es) > 0 {
			return del, add, true
		}
	}
	return nil, nil, false
}

// apply records that p (or, with p nil, nothing) is now installed under k.
func (s *nftShadow) apply(k Key, p *Pinhole) {
	if t, had := s.pinholes[k]; had {
		id := fwdKey(t.pinhole(k))
		if s.fwdRefs[id]--; s.fwdRefs[id] <= 0 {
			delete(s.fwdRefs, id)
		}
		delete(s.pinholes, k)
	}
	if p != nil {
		s.pinholes[k] = target(*p)
		s.fwdRefs[fwdKey(*p)]++
	}
}

// withoutElem returns es without the element whose id is id.
func withoutElem(es []nftElem, id string) []nftElem {
	out := es[:0]
	for _, e := range es {
		if e.id() != id {
			out = append(out, e)
		}
	}
	return out
}
