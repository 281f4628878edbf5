//go:build linux

package firewall

import "net/netip"

// nftShadow is the nftables backend's in-memory copy of what it installed,
// so that one Add or Remove costs the same at 10 pinholes as at 10,000: the
// diff is computed from one pinhole's elements, not from every element read
// back over netlink. It is pure (no I/O) and not safe for concurrent use.
// It lives as long as the daemon, so it is kept compact: about 40 bytes a
// pinhole (a 10-byte and a 12-byte map slot, at the maps' load factor),
// with the rare filters in a side map (it was 100 bytes with them inline),
// since 10,000 pinholes must fit in a router's memory budget.
type nftShadow struct {
	// gen is the ruleset generation at which the kernel held exactly
	// pinholes.
	gen uint32
	// pinholes are the installed pinholes (validated), by key, without
	// their filters.
	pinholes map[Key]nftTarget
	// filters are the filters (normalized, non-empty) of the pinholes in
	// pinholes that have any; a key absent here has none.
	filters map[Key][]Filter
	// fwdRefs counts the pinholes that share each fwd_pinholes element
	// (two pinholes to one internal port share one).
	fwdRefs map[nftFwdKey]int32
}

// nftTarget is a shadowed pinhole without its key and filters: 6 bytes.
type nftTarget struct {
	addr [4]byte
	port uint16
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

// pinhole returns the pinhole installed under k, if any.
func (s *nftShadow) pinhole(k Key) (Pinhole, bool) {
	t, ok := s.pinholes[k]
	if !ok {
		return Pinhole{}, false
	}
	return Pinhole{Proto: k.Proto, ExternalPort: k.ExternalPort,
		InternalAddr: netip.AddrFrom4(t.addr), InternalPort: t.port, Filters: s.filters[k]}, true
}

// put records p (validated) under k, replacing nothing: k must be absent.
func (s *nftShadow) put(k Key, p Pinhole) {
	s.pinholes[k] = nftTarget{addr: p.InternalAddr.As4(), port: p.InternalPort}
	if len(p.Filters) > 0 {
		s.filters[k] = p.Filters
	}
	s.fwdRefs[fwdKey(p)]++
}

// newNFTShadow returns the shadow of m (validated) installed at generation
// gen.
func newNFTShadow(m map[Key]Pinhole, gen uint32) *nftShadow {
	s := &nftShadow{gen: gen, pinholes: make(map[Key]nftTarget, len(m)),
		filters: make(map[Key][]Filter), fwdRefs: make(map[nftFwdKey]int32, len(m))}
	for k, p := range m {
		s.put(k, p)
	}
	return s
}

func (s *nftShadow) len() int { return len(s.pinholes) }

// diff returns the elements to delete and to add, per set, to go from the
// shadow to the shadow with p (validated) installed under k, or with p nil
// removed. ok is false when nothing would change.
func (s *nftShadow) diff(k Key, p *Pinhole) (del, add nftState, ok bool) {
	old, had := s.pinhole(k)
	if !had && p == nil {
		return nil, nil, false
	}
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
	if old, had := s.pinhole(k); had {
		id := fwdKey(old)
		if s.fwdRefs[id]--; s.fwdRefs[id] <= 0 {
			delete(s.fwdRefs, id)
		}
		delete(s.pinholes, k)
		delete(s.filters, k)
	}
	if p != nil {
		s.put(k, *p)
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
