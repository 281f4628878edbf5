package firewall

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"reflect"
	"testing"
)

// Captured on Linux 6.18 (x86_64, little endian) from a socket in
// NFNLGRP_NFTABLES in a fresh network namespace, while nft 1.0.6 ran the
// commands named; and the reply to an NFT_MSG_GETGEN request with
// sequence number 42.
const (
	// nft add table ip dpf: NEWTABLE ip "dpf", then NEWGEN 2 by pid 0x2303 "nft".
	capNewTable = "38000000000a0000010000000323000002000002080001006470660008000300000000000c00040000000000000000010800020000000000"
	capGen2     = "2c0000000f0a000001000000032300000000000208000100000000020800020000002303080003006e667400"
	// nft flush ruleset (after adding chain c): DELCHAIN ip dpf c and
	// DELTABLE ip dpf in one datagram.
	capFlush = "30000000050a0000010000000523000002000004080001006470660006000300630000000c000200000000000000000130000000020a0000010000000523000002000004080001006470660008000300000000000c0004000000000000000001"
	// The GETGEN reply: generation 4, seq 42.
	capGetGenReply = "2c0000000f0a00002a0000006a740ea000000004080001000000000408000200000022fe0800030063617000"
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

func TestParseNFNLCaptured(t *testing.T) {
	for _, tc := range []struct {
		name string
		hex  string
		want []nftMsg
	}{
		{"new table", capNewTable, []nftMsg{{Type: 0, Family: nfprotoIPv4, Seq: 1, Table: "dpf"}}},
		{"new gen", capGen2, []nftMsg{{Type: nftMsgNewGen, Seq: 1, Gen: 2, PID: 0x2303, Comm: "nft"}}},
		{"flush ruleset", capFlush, []nftMsg{
			{Type: 5, Family: nfprotoIPv4, Seq: 1, Table: "dpf"},
			{Type: 2, Family: nfprotoIPv4, Seq: 1, Table: "dpf"},
		}},
		{"getgen reply", capGetGenReply, []nftMsg{{Type: nftMsgNewGen, Seq: 42, Gen: 4, PID: 0x22fe, Comm: "cap"}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseNFNL(unhex(t, tc.hex), le)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("parseNFNL =\n%+v\nwant\n%+v", got, tc.want)
			}
			for _, m := range got {
				if m.isRulesetChange() != (m.Type != nftMsgNewGen) {
					t.Errorf("isRulesetChange(%+v) = %v", m, m.isRulesetChange())
				}
			}
		})
	}
}

func TestAppendGetGen(t *testing.T) {
	// What the capture's requester sent: length 20, type 0x0a10,
	// NLM_F_REQUEST, seq 42, port 0, nfgenmsg AF_UNSPEC v0 res_id 0.
	want := "14000000100a01002a0000000000000000000000"
	if got := hex.EncodeToString(appendGetGen(nil, 42, le)); got != want {
		t.Fatalf("appendGetGen = %s, want %s", got, want)
	}
}

func TestParseNFNLErrors(t *testing.T) {
	ack := appendNFNLMsg(nil, nftMsg{Reply: true, Seq: 7}, le)
	enoent := appendNFNLMsg(nil, nftMsg{Reply: true, Seq: 8, Errno: 2}, le)
	got, err := parseNFNL(append(ack, enoent...), le)
	if err != nil || len(got) != 2 || got[0].Errno != 0 || !got[0].Reply || got[1].Errno != 2 || got[0].isRulesetChange() {
		t.Fatalf("acks: %+v %v", got, err)
	}
	for _, bad := range []string{
		"0800",                             // shorter than a header
		"ff000000000a00000100000000000000", // claims 255 bytes
		capNewTable[:len(capNewTable)-8],   // claims 8 bytes more than there are
		"10000000000a00000100000000000000", // an nftables message without its nfgenmsg
	} {
		if got, err := parseNFNL(unhex(t, bad), le); !errors.Is(err, errNFNLTruncated) {
			t.Errorf("parseNFNL(%s) = %+v, %v; want errNFNLTruncated", bad, got, err)
		}
	}
	// An attribute claiming more than the message holds.
	m := unhex(t, capNewTable)
	m[20] = 0xff
	if _, err := parseNFNL(m, le); !errors.Is(err, errNFNLTruncated) {
		t.Errorf("long attribute: %v", err)
	}
	// A short NFTA_GEN_ID.
	g := unhex(t, capGen2)
	g[20] = 6
	if _, err := parseNFNL(g, le); !errors.Is(err, errNFNLTruncated) {
		t.Errorf("short NFTA_GEN_ID: %v", err)
	}
	// Messages of other subsystems are skipped.
	other := unhex(t, capNewTable)
	other[5] = 1 // NFNL_SUBSYS_CTNETLINK
	if got, err := parseNFNL(other, le); err != nil || len(got) != 0 {
		t.Errorf("conntrack message: %+v %v", got, err)
	}
}

// appendNFNLMsg encodes m as the kernel would (the inverse of parseNFNL),
// for round trips.
func appendNFNLMsg(b []byte, m nftMsg, o nfnlByteOrder) []byte {
	start := len(b)
	b = o.AppendUint32(b, 0) // length, set below
	switch {
	case m.Reply:
		b = o.AppendUint16(b, nlmsgError)
	case m.Overrun:
		b = o.AppendUint16(b, nlmsgOverrun)
	default:
		b = o.AppendUint16(b, nfnlSubsysNFTables<<8|uint16(m.Type))
	}
	b = o.AppendUint16(b, 0)
	b = o.AppendUint32(b, m.Seq)
	b = o.AppendUint32(b, 0)
	switch {
	case m.Reply:
		b = o.AppendUint32(b, uint32(-m.Errno))
		b = append(b, make([]byte, nlmsgHdrLen)...) // the echoed request header
	case m.Overrun:
	default:
		b = append(b, m.Family, nfnetlinkV0, 0, 0)
		attr := func(typ uint16, v []byte) {
			b = o.AppendUint16(b, uint16(nlaHdrLen+len(v)))
			b = o.AppendUint16(b, typ)
			b = append(b, v...)
			for len(b)%4 != 0 {
				b = append(b, 0)
			}
		}
		if m.Type == nftMsgNewGen {
			attr(nftaGenID, binary.BigEndian.AppendUint32(nil, m.Gen))
			attr(nftaGenPID, binary.BigEndian.AppendUint32(nil, m.PID))
			attr(nftaGenComm, append([]byte(m.Comm), 0))
		} else if m.Table != "" {
			attr(nftaTableName, append([]byte(m.Table), 0))
		}
	}
	o.PutUint32(b[start:], uint32(len(b)-start))
	return b
}

func TestNFNLRoundTrip(t *testing.T) {
	for _, h := range []string{capNewTable, capGen2, capFlush, capGetGenReply} {
		msgs, err := parseNFNL(unhex(t, h), le)
		if err != nil {
			t.Fatal(err)
		}
		var b []byte
		for _, m := range msgs {
			b = appendNFNLMsg(b, m, le)
		}
		again, err := parseNFNL(b, le)
		if err != nil || !reflect.DeepEqual(again, msgs) {
			t.Fatalf("round trip of %+v: %+v, %v", msgs, again, err)
		}
	}
}

// FuzzParseNFNL checks that any input decodes without panicking, and that
// the messages decoded encode and decode to the same messages.
func FuzzParseNFNL(f *testing.F) {
	for _, h := range []string{capNewTable, capGen2, capFlush, capGetGenReply, capFlush + capGen2} {
		b, _ := hex.DecodeString(h)
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		msgs, _ := parseNFNL(b, le)
		for _, m := range msgs {
			again, err := parseNFNL(appendNFNLMsg(nil, m, le), le)
			if err != nil || len(again) != 1 || !reflect.DeepEqual(again[0], m) {
				t.Fatalf("round trip of %+v: %+v, %v", m, again, err)
			}
		}
	})
}
