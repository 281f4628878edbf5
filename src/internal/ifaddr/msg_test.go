package ifaddr

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// Captured on Linux 6.18 (x86_64, little endian) from a socket bound to
// RTMGRP_IPV4_IFADDR in a fresh network namespace with a veth wan0
// (index 3), while iproute2 ran the commands named.
const (
	// ip addr add 203.0.113.1/24 dev wan0
	capNew = "5000000014000000ac14056bc10e0000021880000300000008000100cb00710108000200cb0071010900030077616e3000000000080008008000000014000600ffffffffffffffff70080f0070080f00"
	// ip addr add 203.0.113.7/24 dev wan0 label wan0:1
	capNewLabel = "5000000014000000ac14056bc30e0000021881000300000008000100cb00710708000200cb0071070b00030077616e303a310000080008008100000014000600ffffffffffffffff90080f0090080f00"
	// ip addr del 203.0.113.1/24 dev wan0: the primary goes, and with
	// it the secondary (two datagrams; here the second).
	capDel = "5000000015000000ad14056bc50e0000021880000300000008000100cb00710108000200cb0071010900030077616e3000000000080008008000000014000600ffffffffffffffff70080f0070080f00"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var le = binary.LittleEndian

func TestParseCaptured(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want []Change
	}{
		{"new", capNew, []Change{{Index: 3, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.1/24")}}},
		{"new with label", capNewLabel, []Change{{Index: 3, Label: "wan0:1", Prefix: netip.MustParsePrefix("203.0.113.7/24")}}},
		{"del", capDel, []Change{{Deleted: true, Index: 3, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.1/24")}}},
		{"two in one", capNewLabel + capDel, []Change{
			{Index: 3, Label: "wan0:1", Prefix: netip.MustParsePrefix("203.0.113.7/24")},
			{Deleted: true, Index: 3, Label: "wan0", Prefix: netip.MustParsePrefix("203.0.113.1/24")},
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, lost, err := parseMessages(unhex(t, tc.hex), le)
			if err != nil || lost {
				t.Fatalf("lost %v, err %v", lost, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("got %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParseOddities(t *testing.T) {
	// Point-to-point: IFA_LOCAL is ours, IFA_ADDRESS the peer's.
	p2p := appendChange(nil, Change{Index: 5, Label: "ppp0", Prefix: netip.MustParsePrefix("203.0.113.9/32")}, le)
	p2p = appendAttr(p2p, ifaAddress, []byte{198, 51, 100, 77}, le)
	fixLen(p2p, le)
	if got, _, err := parseMessages(p2p, le); err != nil || len(got) != 1 || got[0].Prefix.Addr() != netip.MustParseAddr("203.0.113.9") {
		t.Errorf("point-to-point: %+v %v", got, err)
	}
	// IPv6 and other message types are skipped; an overrun is reported.
	v6 := unhex(t, capNew)
	v6[16] = 10 // AF_INET6
	other := unhex(t, capNew)
	other[4] = 16 // RTM_NEWLINK
	overrun := le.AppendUint32(nil, 16)
	overrun = le.AppendUint16(overrun, nlmsgOverrun)
	overrun = append(overrun, make([]byte, 10)...)
	got, lost, err := parseMessages(append(append(v6, other...), overrun...), le)
	if err != nil || len(got) != 0 || !lost {
		t.Errorf("skips: %+v lost %v %v", got, lost, err)
	}
	for _, bad := range []string{
		"0800",                             // shorter than a header
		"ff000000140000000000000000000000", // claims 255 bytes
		capNew[:len(capNew)-8],             // claims more than there is
		"1400000014000000000000000000000002180000", // ifaddrmsg cut short
	} {
		if got, _, err := parseMessages(unhex(t, bad), le); !errors.Is(err, ErrTruncated) {
			t.Errorf("parseMessages(%s) = %+v, %v; want ErrTruncated", bad, got, err)
		}
	}
	long := unhex(t, capNew)
	long[24] = 0xff // the first attribute's length
	if _, _, err := parseMessages(long, le); !errors.Is(err, ErrTruncated) {
		t.Errorf("long attribute: %v", err)
	}
}

// appendChange encodes c as the kernel does (without the header's final
// length; see fixLen), the inverse of parseMessages, for round trips.
func appendChange(b []byte, c Change, o byteOrder) []byte {
	typ := uint16(rtmNewAddr)
	if c.Deleted {
		typ = rtmDelAddr
	}
	b = o.AppendUint32(b, 0)
	b = o.AppendUint16(b, typ)
	b = o.AppendUint16(b, 0)
	b = o.AppendUint32(b, 0)
	b = o.AppendUint32(b, 0)
	b = append(b, afInet, byte(c.Prefix.Bits()), 0, 0)
	b = o.AppendUint32(b, uint32(c.Index))
	a := c.Prefix.Addr().As4()
	b = appendAttr(b, ifaLocal, a[:], o)
	if c.Label != "" {
		b = appendAttr(b, ifaLabel, append([]byte(c.Label), 0), o)
	}
	fixLen(b, o)
	return b
}

func appendAttr(b []byte, typ uint16, v []byte, o byteOrder) []byte {
	b = o.AppendUint16(b, uint16(rtaHdrLen+len(v)))
	b = o.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// fixLen sets the length of the one message in b.
func fixLen(b []byte, o byteOrder) { o.PutUint32(b[0:4], uint32(len(b))) }

// FuzzParseMessages checks that any input decodes without panicking and
// that every change decoded encodes and decodes to the same change.
func FuzzParseMessages(f *testing.F) {
	for _, h := range []string{capNew, capNewLabel, capDel, capNewLabel + capDel} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		cs, _, _ := parseMessages(b, le)
		for _, c := range cs {
			again, _, err := parseMessages(appendChange(nil, c, le), le)
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], c) {
				t.Fatalf("round trip of %+v: %+v, %v", c, again, err)
			}
		}
	})
}
