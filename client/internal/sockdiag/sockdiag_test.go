package sockdiag

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// The fixtures were captured on Linux 6.18 (x86_64, so little-endian) in a
// fresh network namespace, with sockets made by Python:
//
//	tcp 0.0.0.0:8080 listen              inode 190250
//	tcp [::]:8443 listen, IPV6_V6ONLY=0  inode 190251
//	tcp [::]:8444 listen, IPV6_V6ONLY=1  inode 190252
//	udp 127.0.0.1:5353                   inode 190253
//	udp 0.0.0.0:9999 connected to 127.0.0.1:53  inode 190254
//	udp [::ffff:127.0.0.1]:4500          inode 190255
//
// Each reply is one recvfrom(2) of a dump with sequence number 7; the kernel
// adds INET_DIAG_SHUTDOWN, _MARK, _CGROUP_ID and _SOCKOPT attributes, which
// the parser skips, and INET_DIAG_SKV6ONLY for AF_INET6.
const (
	capTCP4 = "7c00000014000200070000008a3a0000020a00001f9000000000000000000000000000000000000000000000000000000000000000000000000000000100000000000000000000000000000080000000000000002ae70200050008000000000008000f00000000000c00150001000000000000000600160052000000"
	capTCP6 = "8400000014000200070000008a3a00000a0a000020fb00000000000000000000000000000000000000000000000000000000000000000000000000000200000000000000000000000000000080000000000000002be70200050008000000000005000b000000000008000f00000000000c001500010000000000000006001600120000008400000014000200070000008a3a00000a0a000020fc00000000000000000000000000000000000000000000000000000000000000000000000000000300000000000000000000000000000080000000000000002ce70200050008000000000005000b000100000008000f00000000000c00150001000000000000000600160012000000"
	capUDP4 = "7c00000014000200070000008a3a00000207000014e900007f00000100000000000000000000000000000000000000000000000000000000000000000400000000000000000000000000000000000000000000002de70200050008000000000008000f00000000000c001500010000000000000006001600500000007c00000014000200070000008a3a000002010000270f00357f0000010000000000000000000000007f000001000000000000000000000000000000000500000000000000000000000000000000000000000000002ee70200050008000000000008000f00000000000c00150001000000000000000600160050000000"
	capUDP6 = "8400000014000200070000008a3a00000a0700001194000000000000000000000000ffff7f00000100000000000000000000000000000000000000000600000000000000000000000000000000000000000000002fe70200050008000000000005000b000000000008000f00000000000c00150001000000000000000600160010000000"
	capDone = "1400000003000200070000008a3a000000000000"
)

var le = binary.LittleEndian

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseCaptured(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name  string
		hex   string
		proto uint8
		want  []Socket
	}{
		{"tcp4", capTCP4, ProtoTCP, []Socket{
			{Family: AFInet, Protocol: ProtoTCP, State: StateListen, Local: ap("0.0.0.0:8080"), Remote: ap("0.0.0.0:0"), Inode: 190250},
		}},
		{"tcp6", capTCP6, ProtoTCP, []Socket{
			{Family: AFInet6, Protocol: ProtoTCP, State: StateListen, Local: ap("[::]:8443"), Remote: ap("[::]:0"), Inode: 190251, HasV6Only: true},
			{Family: AFInet6, Protocol: ProtoTCP, State: StateListen, Local: ap("[::]:8444"), Remote: ap("[::]:0"), Inode: 190252, HasV6Only: true, V6Only: true},
		}},
		{"udp4", capUDP4, ProtoUDP, []Socket{
			{Family: AFInet, Protocol: ProtoUDP, State: StateClose, Local: ap("127.0.0.1:5353"), Remote: ap("0.0.0.0:0"), Inode: 190253},
			{Family: AFInet, Protocol: ProtoUDP, State: StateEstablished, Local: ap("127.0.0.1:9999"), Remote: ap("127.0.0.1:53"), Inode: 190254},
		}},
		{"udp6", capUDP6, ProtoUDP, []Socket{
			{Family: AFInet6, Protocol: ProtoUDP, State: StateClose, Local: ap("[::ffff:127.0.0.1]:4500"), Remote: ap("[::]:0"), Inode: 190255, HasV6Only: true},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, done, err := parseMessages(unhex(t, tt.hex), 7, tt.proto, le)
			if err != nil || done {
				t.Fatalf("parse: done=%v err=%v", done, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// The same datagram followed by NLMSG_DONE ends the dump.
			got, done, err = parseMessages(unhex(t, tt.hex+capDone), 7, tt.proto, le)
			if err != nil || !done || len(got) != len(tt.want) {
				t.Errorf("with DONE: %d sockets, done=%v, err=%v", len(got), done, err)
			}
			// Another sequence number is someone else's reply.
			got, done, err = parseMessages(unhex(t, tt.hex+capDone), 8, tt.proto, le)
			if err != nil || done || len(got) != 0 {
				t.Errorf("other seq: %d sockets, done=%v, err=%v", len(got), done, err)
			}
		})
	}
}

func TestRequestAppend(t *testing.T) {
	// The TCP/IPv4 LISTEN request that produced capTCP4 ("ss -4tl" sends
	// the same, apart from the sequence number and extensions).
	want := "480000001400010307000000000000000206000000040000" + "000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000000"
	got := Request{Family: AFInet, Protocol: ProtoTCP, States: States(StateListen)}.appendOrder(nil, 7, le)
	if hex.EncodeToString(got) != want {
		t.Errorf("got  %x\nwant %s", got, want)
	}
	if n := len(Request{}.Append(nil, 1)); n != nlmsgHdrLen+reqV2Len {
		t.Errorf("native request is %d bytes", n)
	}
}

func TestParseErrors(t *testing.T) {
	nlmsg := func(typ uint16, seq uint32, payload []byte) []byte {
		b := le.AppendUint32(nil, uint32(nlmsgHdrLen+len(payload)))
		b = le.AppendUint16(b, typ)
		b = le.AppendUint16(b, nlmFMulti)
		b = le.AppendUint32(b, seq)
		b = le.AppendUint32(b, 0)
		return append(b, payload...)
	}
	negErrno := func(e int32) []byte { return le.AppendUint32(nil, uint32(-e)) }
	tcp4 := unhex(t, capTCP4)
	badAttr := append([]byte(nil), tcp4...)
	le.PutUint16(badAttr[nlmsgHdrLen+msgLen:], 200) // attribute longer than the message

	tests := []struct {
		name     string
		b        []byte
		wantErr  error
		wantDone bool
	}{
		{"empty", nil, nil, false},
		{"short header", tcp4[:10], ErrTruncated, false},
		{"length beyond buffer", tcp4[:60], ErrTruncated, false},
		{"length below header", nlmsg(nlmsgDone, 7, nil)[:16:16], nil, true},
		{"short inet_diag_msg", nlmsg(sockDiagByFamily, 7, make([]byte, 30)), ErrTruncated, false},
		{"bad attribute", badAttr, ErrTruncated, false},
		{"error ENOENT", nlmsg(nlmsgError, 7, append(negErrno(2), make([]byte, 16)...)), Errno(2), true},
		{"ack", nlmsg(nlmsgError, 7, make([]byte, 20)), nil, false},
		{"short error", nlmsg(nlmsgError, 7, []byte{1}), ErrTruncated, false},
		{"done with error", nlmsg(nlmsgDone, 7, negErrno(22)), Errno(22), true},
		{"noop", nlmsg(1, 7, nil), nil, false},
		{"unknown family", nlmsg(sockDiagByFamily, 7, make([]byte, msgLen)), errAny, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, done, err := parseMessages(tt.b, 7, ProtoTCP, le)
			switch {
			case tt.wantErr == errAny:
				if err == nil {
					t.Error("no error")
				}
			case !errors.Is(err, tt.wantErr):
				t.Errorf("err = %v, want %v", err, tt.wantErr)
			}
			if done != tt.wantDone {
				t.Errorf("done = %v, want %v", done, tt.wantDone)
			}
		})
	}
}

var errAny = errors.New("any error")

// appendMsg encodes s as the kernel would (without the attributes it does
// not decode), for round trips.
func appendMsg(b []byte, s Socket, seq uint32) []byte {
	start := len(b)
	b = le.AppendUint32(b, 0) // length, set below
	b = le.AppendUint16(b, sockDiagByFamily)
	b = le.AppendUint16(b, nlmFMulti)
	b = le.AppendUint32(b, seq)
	b = le.AppendUint32(b, 0)
	b = append(b, s.Family, s.State, 0, 0)
	b = binary.BigEndian.AppendUint16(b, s.Local.Port())
	b = binary.BigEndian.AppendUint16(b, s.Remote.Port())
	for _, a := range []netip.Addr{s.Local.Addr(), s.Remote.Addr()} {
		var f [16]byte
		if s.Family == AFInet {
			a4 := a.As4()
			copy(f[:], a4[:])
		} else {
			f = a.As16()
		}
		b = append(b, f[:]...)
	}
	b = append(b, make([]byte, 12+12)...) // interface, cookie; expires, rqueue, wqueue
	b = le.AppendUint32(b, s.UID)
	b = le.AppendUint32(b, s.Inode)
	if s.HasV6Only {
		v := byte(0)
		if s.V6Only {
			v = 1
		}
		b = le.AppendUint16(b, 5)
		b = le.AppendUint16(b, AttrSKV6Only)
		b = append(b, v, 0, 0, 0)
	}
	le.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func TestRoundTrip(t *testing.T) {
	for _, h := range []string{capTCP4, capTCP6, capUDP4, capUDP6} {
		socks, _, err := parseMessages(unhex(t, h), 7, ProtoUDP, le)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, s := range socks {
			b = appendMsg(b, s, 7)
		}
		again, _, err := parseMessages(b, 7, ProtoUDP, le)
		if err != nil || !reflect.DeepEqual(again, socks) {
			t.Errorf("round trip: %v\n got %+v\nwant %+v", err, again, socks)
		}
	}
}
