package pcp

import (
	"encoding/binary"
	"net/netip"
	"unicode/utf8"
)

// Option is one PCP option (RFC 6887 section 7.3) as it appears on the
// wire: Code and the unpadded option data. Codes below 128 are mandatory to
// process; codes 128 and above are optional.
//
// On the wire the data is followed by zero padding up to a multiple of 4
// bytes; the padding is not part of Data. Options parsed by this package own
// their Data (it does not alias the input buffer) and Data is never nil.
type Option struct {
	Code uint8
	Data []byte
}

// Mandatory reports whether o is in the mandatory-to-process range 0-127
// (RFC 6887 section 7.3).
func (o Option) Mandatory() bool { return o.Code < 128 }

// wireLen is the size of o on the wire, header and padding included.
func (o Option) wireLen() int {
	return OptionHeaderSize + padded(len(o.Data))
}

func padded(n int) int { return (n + 3) &^ 3 }

// Filter is the decoded data of a FILTER option (RFC 6887 section 13.3): a
// remote peer prefix and port allowed to reach a mapping.
//
// Prefix is a plain netip.Prefix: an IPv4 filter is a 4-byte prefix such as
// 192.0.2.0/24, carried on the wire as an IPv4-mapped address with prefix
// length 96+24. The address bits beyond the prefix length are kept as
// received, not masked. The zero Prefix is the RFC's "no filter" (wire
// prefix length 0), which removes all filters given earlier in the request;
// the address sent with it is not kept. Port 0 means all ports.
type Filter struct {
	Prefix netip.Prefix
	Port   uint16
}

// decodeFilter decodes FILTER option data. It reports false when the data
// is not 20 bytes or the prefix length is out of range: above 128, or for an
// IPv4-mapped address between 1 and 95.
func decodeFilter(d []byte) (Filter, bool) {
	if len(d) != filterLen {
		return Filter{}, false
	}
	// d[0] is reserved and ignored on reception.
	plen := int(d[1])
	f := Filter{Port: binary.BigEndian.Uint16(d[2:4])}
	raw := netip.AddrFrom16([16]byte(d[4:20]))
	switch {
	case plen == 0:
		return f, true
	case plen > 128:
		return Filter{}, false
	case raw.Is4In6():
		if plen < 96 {
			return Filter{}, false
		}
		f.Prefix = netip.PrefixFrom(raw.Unmap(), plen-96)
	default:
		f.Prefix = netip.PrefixFrom(raw, plen)
	}
	return f, true
}

// FilterOption returns the FILTER option for f (RFC 6887 section 13.3). An
// IPv4 prefix is written as an IPv4-mapped address with prefix length
// 96+f.Prefix.Bits(); the zero Prefix is written as "no filter" (prefix
// length 0, address ::).
func FilterOption(f Filter) Option {
	d := make([]byte, filterLen)
	binary.BigEndian.PutUint16(d[2:4], f.Port)
	if f.Prefix.IsValid() {
		a := f.Prefix.Addr()
		bits := f.Prefix.Bits()
		if a.Is4() {
			bits += 96
		}
		d[1] = byte(bits)
		w := AddrTo16(a)
		copy(d[4:], w[:])
	}
	return Option{Code: OptFilter, Data: d}
}

// ThirdPartyOption returns the THIRD_PARTY option naming addr as the
// internal host (RFC 6887 section 13.1).
func ThirdPartyOption(addr netip.Addr) Option {
	w := AddrTo16(addr)
	return Option{Code: OptThirdParty, Data: w[:]}
}

// PreferFailureOption returns the PREFER_FAILURE option (RFC 6887 section
// 13.2), which has no data.
func PreferFailureOption() Option {
	return Option{Code: OptPreferFailure, Data: []byte{}}
}

// MaxDescriptionLen is the longest DESCRIPTION text that fits in a
// MaxMessageSize PEER request: 1100 - 24 (header) - 56 (PEER payload) - 4
// (option header) = 1016 bytes (RFC 7220 section 4).
const MaxDescriptionLen = MaxMessageSize - RequestHeaderSize - PeerPayloadSize - OptionHeaderSize

// DescriptionOption returns the DESCRIPTION option (RFC 7220) carrying s.
// Text longer than MaxDescriptionLen bytes is cut at a UTF-8 character
// boundary at or below that length; invalid UTF-8 is passed through as is.
func DescriptionOption(s string) Option {
	if len(s) > MaxDescriptionLen {
		n := MaxDescriptionLen
		for n > 0 && !utf8.RuneStart(s[n]) {
			n--
		}
		s = s[:n]
	}
	return Option{Code: OptDescription, Data: []byte(s)}
}

// nextOption reads the option at b[off:]. It reports false when fewer than 4
// bytes remain or the data, with its padding, runs past the end of b. The
// returned Data is a copy.
func nextOption(b []byte, off int) (o Option, next int, ok bool) {
	if len(b)-off < OptionHeaderSize {
		return Option{}, 0, false
	}
	// b[off+1] is reserved and ignored on reception.
	n := int(binary.BigEndian.Uint16(b[off+2 : off+4]))
	start := off + OptionHeaderSize
	if padded(n) > len(b)-start {
		return Option{}, 0, false
	}
	d := make([]byte, n)
	copy(d, b[start:start+n])
	return Option{Code: b[off], Data: d}, start + padded(n), true
}

// appendOptions appends opts to b in order, each padded to a multiple of 4,
// skipping any option whose addition would make the message (which began
// at b[msgStart]) longer than MaxMessageSize.
func appendOptions(b []byte, msgStart int, opts []Option) []byte {
	for _, o := range opts {
		if len(o.Data) > 0xffff || len(b)-msgStart+o.wireLen() > MaxMessageSize {
			continue
		}
		b = append(b, o.Code, 0)
		b = binary.BigEndian.AppendUint16(b, uint16(len(o.Data)))
		b = append(b, o.Data...)
		for range padded(len(o.Data)) - len(o.Data) {
			b = append(b, 0)
		}
	}
	return b
}
