//go:build linux

package firewall

// Encoding of pinholes as nftables set elements, pure (no netlink I/O) so it
// is tested without root.
//
// Concatenated keys and data follow the kernel's register layout: each
// component starts on a 4-byte boundary, so a 2-byte inet_service and a
// 1-byte inet_proto are followed by zero padding, exactly as nft(8) encodes
// them ("payload load 2b ... => reg 9" then "=> reg 10").

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"sort"

	"github.com/google/nftables"
)

// Names of the objects in dpfd's nftables table. "fwd", "dnat" and "forward"
// are nft keywords, hence the longer names.
const (
	nftTableName      = "dpf"
	nftChainFilterPre = "filter_pre" // drops filtered pinholes' unlisted peers
	nftChainDNAT      = "dnat_pre"   // the DNAT of every pinhole
	nftChainForward   = "filter_fwd" // accepts the DNATed flows
	nftSetForward     = "fwd_pinholes"
)

// nftProtos are the protocols with their own maps and sets, in table order.
var nftProtos = [...]Proto{TCP, UDP}

func nftDNATMap(p Proto) string  { return "dnat_" + p.String() }
func nftFiltered(p Proto) string { return "filtered_" + p.String() }
func nftAllow(p Proto) string    { return "allow_" + p.String() }

// nftElem is one set element: Key, KeyEnd for ranges of an interval set
// (nil otherwise) and Val for map data (nil for plain sets).
type nftElem struct {
	Key, KeyEnd, Val []byte
}

// id identifies e for diffing; a map element whose data changes is a
// different element (delete the old, add the new).
func (e nftElem) id() string {
	return string(e.Key) + "\x00|" + string(e.KeyEnd) + "\x00|" + string(e.Val)
}

func (e nftElem) setElement() nftables.SetElement {
	return nftables.SetElement{Key: e.Key, KeyEnd: e.KeyEnd, Val: e.Val}
}

// nftState is the contents of dpfd's sets, by set name.
type nftState map[string][]nftElem

// port encodes a port in network byte order.
func nftPort(p uint16) []byte { return binary.BigEndian.AppendUint16(nil, p) }

// regPort encodes a port as a concatenation component (padded to 4 bytes).
func nftRegPort(p uint16) []byte { return []byte{byte(p >> 8), byte(p), 0, 0} }

func nftAddr(a netip.Addr) []byte { b := a.As4(); return b[:] }

// nftElements returns the set elements that install ps (validated, unique
// keys), by set name. Every set of the table has an entry.
func nftElements(ps map[Key]Pinhole) nftState {
	st := make(nftState)
	for _, proto := range nftProtos {
		st[nftDNATMap(proto)] = nil
		st[nftFiltered(proto)] = nil
		st[nftAllow(proto)] = nil
	}
	fwd := make(map[string]nftElem)
	for _, p := range sortedPinholes(ps) {
		ext := p.ExternalPort
		// element dnat_tcp { EXT : INTADDR . INTPORT }
		st[nftDNATMap(p.Proto)] = append(st[nftDNATMap(p.Proto)], nftElem{
			Key: nftPort(ext),
			Val: append(nftAddr(p.InternalAddr), nftRegPort(p.InternalPort)...),
		})
		// element fwd_pinholes { INTADDR . tcp . INTPORT }
		// Two pinholes to one internal port share the element.
		fe := nftFwdElem(p)
		fwd[fe.id()] = fe
		if len(p.Filters) == 0 {
			continue
		}
		// element filtered_tcp { EXT }
		st[nftFiltered(p.Proto)] = append(st[nftFiltered(p.Proto)], nftElem{Key: nftPort(ext)})
		for _, f := range p.Filters {
			lo, hi := prefixRange(f.Prefix)
			plo, phi := f.Port, f.Port
			if f.Port == 0 {
				plo, phi = 0, 0xffff
			}
			// element allow_tcp { EXT . PREFIX . PORT } (or . 0-65535)
			st[nftAllow(p.Proto)] = append(st[nftAllow(p.Proto)], nftElem{
				Key:    concat(nftRegPort(ext), nftAddr(lo), nftRegPort(plo)),
				KeyEnd: concat(nftRegPort(ext), nftAddr(hi), nftRegPort(phi)),
			})
		}
	}
	ids := make([]string, 0, len(fwd))
	for id := range fwd {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	st[nftSetForward] = nil
	for _, id := range ids {
		st[nftSetForward] = append(st[nftSetForward], fwd[id])
	}
	return st
}

// nftFwdElem is p's element of fwd_pinholes: INTADDR . PROTO . INTPORT.
func nftFwdElem(p Pinhole) nftElem {
	return nftElem{Key: append(append(nftAddr(p.InternalAddr), byte(p.Proto), 0, 0, 0), nftRegPort(p.InternalPort)...)}
}

func concat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// prefixRange returns the first and last address of an IPv4 prefix.
func prefixRange(p netip.Prefix) (lo, hi netip.Addr) {
	p = p.Masked()
	a := p.Addr().As4()
	v := binary.BigEndian.Uint32(a[:])
	v |= uint32(uint64(1)<<(32-p.Bits()) - 1)
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], v)
	return p.Addr(), netip.AddrFrom4(b)
}

// rangePrefix is the inverse of prefixRange; ok is false when [lo, hi] is
// not exactly one prefix.
func rangePrefix(lo, hi [4]byte) (netip.Prefix, bool) {
	l, h := binary.BigEndian.Uint32(lo[:]), binary.BigEndian.Uint32(hi[:])
	span := l ^ h
	if l&span != 0 || h&span != span || span&(span+1) != 0 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(lo), 32-bits.OnesCount32(span)), true
}

// nftPinholes decodes the pinholes in st, the inverse of nftElements.
// Elements that dpfd would not have written are reported as errors.
func nftPinholes(st nftState) ([]Pinhole, error) {
	ps := make(map[Key]Pinhole)
	for _, proto := range nftProtos {
		for _, e := range st[nftDNATMap(proto)] {
			if len(e.Key) != 2 || len(e.Val) != 8 {
				return nil, fmt.Errorf("firewall: unexpected element in %s: %x : %x", nftDNATMap(proto), e.Key, e.Val)
			}
			p := Pinhole{
				Proto:        proto,
				ExternalPort: binary.BigEndian.Uint16(e.Key),
				InternalAddr: netip.AddrFrom4([4]byte(e.Val[:4])),
				InternalPort: binary.BigEndian.Uint16(e.Val[4:6]),
			}
			ps[p.Key()] = p
		}
		filtered := make(map[uint16]bool)
		for _, e := range st[nftFiltered(proto)] {
			if len(e.Key) != 2 {
				return nil, fmt.Errorf("firewall: unexpected element in %s: %x", nftFiltered(proto), e.Key)
			}
			filtered[binary.BigEndian.Uint16(e.Key)] = true
		}
		for _, e := range st[nftAllow(proto)] {
			if len(e.Key) != 12 || len(e.KeyEnd) != 12 ||
				string(e.Key[:4]) != string(e.KeyEnd[:4]) {
				return nil, fmt.Errorf("firewall: unexpected element in %s: %x-%x", nftAllow(proto), e.Key, e.KeyEnd)
			}
			k := Key{proto, binary.BigEndian.Uint16(e.Key)}
			p, ok := ps[k]
			if !ok || !filtered[k.ExternalPort] {
				continue // a leftover without its pinhole: not a filter in force
			}
			pfx, ok := rangePrefix([4]byte(e.Key[4:8]), [4]byte(e.KeyEnd[4:8]))
			if !ok {
				return nil, fmt.Errorf("firewall: %s element %x-%x is not a prefix", nftAllow(proto), e.Key, e.KeyEnd)
			}
			plo, phi := binary.BigEndian.Uint16(e.Key[8:10]), binary.BigEndian.Uint16(e.KeyEnd[8:10])
			f := Filter{Prefix: pfx}
			switch {
			case plo == phi:
				f.Port = plo
			case plo == 0 && phi == 0xffff:
			default:
				return nil, fmt.Errorf("firewall: %s element %x-%x has a port range", nftAllow(proto), e.Key, e.KeyEnd)
			}
			p.Filters = append(p.Filters, f)
			ps[k] = p
		}
	}
	out := sortedPinholes(ps)
	for i := range out {
		out[i].Filters, _ = normalizeFilters(out[i].Filters)
	}
	return out, nil
}

// nftDiff returns, per set, the elements of cur missing from want (to
// delete) and those of want missing from cur (to add).
func nftDiff(cur, want nftState) (del, add nftState) {
	del, add = make(nftState), make(nftState)
	for name, ws := range want {
		have := make(map[string]bool, len(cur[name]))
		for _, e := range cur[name] {
			have[e.id()] = true
		}
		wanted := make(map[string]bool, len(ws))
		for _, e := range ws {
			wanted[e.id()] = true
			if !have[e.id()] {
				add[name] = append(add[name], e)
			}
		}
		for _, e := range cur[name] {
			if !wanted[e.id()] {
				del[name] = append(del[name], e)
			}
		}
	}
	return del, add
}
