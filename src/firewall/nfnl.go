package firewall

// A small codec for the nftables netlink messages the self-healing code
// needs: the NFT_MSG_GETGEN request, and the headers of the notifications
// the kernel multicasts to NFNLGRP_NFTABLES after every committed
// transaction (one message per changed table, chain, rule, set or batch of
// set elements, then NFT_MSG_NEWGEN with the new generation id). Only the
// message type, the address family and the table name are decoded, so that
// reading the notifications of a 10,000-element transaction stays cheap.
//
// It is pure (no I/O) and portable. Field layouts follow
// include/uapi/linux/netlink.h, netfilter/nfnetlink.h and
// netfilter/nf_tables.h. Netlink headers and attribute headers are in the
// host's byte order; nfgenmsg.res_id and NFTA_GEN_* values are big endian.

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Netlink and nfnetlink constants.
const (
	nlmsgHdrLen  = 16 // struct nlmsghdr
	nfgenHdrLen  = 4  // struct nfgenmsg: family, version, res_id
	nlaHdrLen    = 4  // struct nlattr
	nlaTypeMask  = 0x3fff
	nlmsgError   = 2 // NLMSG_ERROR
	nlmsgOverrun = 4 // NLMSG_OVERRUN
	nlmFRequest  = 0x1

	nfnlSubsysNFTables = 10 // NFNL_SUBSYS_NFTABLES
	nfnlGroupNFTables  = 7  // NFNLGRP_NFTABLES
	nfnetlinkV0        = 0

	nftMsgNewGen = 15 // NFT_MSG_NEWGEN
	nftMsgGetGen = 16 // NFT_MSG_GETGEN
	nftMsgTrace  = 17 // NFT_MSG_TRACE: packet traces, not ruleset changes

	// Attribute 1 is the table name in every object message:
	// NFTA_TABLE_NAME, NFTA_CHAIN_TABLE, NFTA_RULE_TABLE, NFTA_SET_TABLE,
	// NFTA_SET_ELEM_LIST_TABLE, NFTA_OBJ_TABLE, NFTA_FLOWTABLE_TABLE.
	nftaTableName = 1
	nftaGenID     = 1 // NFTA_GEN_ID, be32
	nftaGenPID    = 2 // NFTA_GEN_PROC_PID, be32
	nftaGenComm   = 3 // NFTA_GEN_PROC_NAME, string

	// nfprotoIPv4 is NFPROTO_IPV4, the family of "table ip" (dpfd's
	// nftables table, and iptables-nft's tables).
	nfprotoIPv4 = 2
)

// errNFNLTruncated is returned for a message or attribute that claims more
// bytes than there are.
var errNFNLTruncated = errors.New("firewall: truncated netlink message")

// nftMsg is one decoded nftables netlink message.
type nftMsg struct {
	// Type is NFT_MSG_* for nftables messages.
	Type   uint8
	Family uint8
	Seq    uint32
	// Table is the table an object message is about ("" if absent).
	Table string
	// Gen, PID and Comm are the attributes of NFT_MSG_NEWGEN: the new
	// generation id and the thread that committed the transaction.
	Gen  uint32
	PID  uint32
	Comm string
	// Reply marks an NLMSG_ERROR message: Errno is its error (positive),
	// 0 for an acknowledgement.
	Reply bool
	Errno int32
	// Overrun reports NLMSG_OVERRUN: notifications were lost.
	Overrun bool
}

// nfnlByteOrder is binary.NativeEndian in production; tests decode
// little-endian fixtures on any host.
type nfnlByteOrder interface {
	binary.ByteOrder
	binary.AppendByteOrder
}

func nlAlign(n int) int { return (n + 3) &^ 3 }

// appendGetGen appends an NFT_MSG_GETGEN request with sequence number seq.
func appendGetGen(b []byte, seq uint32, o nfnlByteOrder) []byte {
	b = o.AppendUint32(b, nlmsgHdrLen+nfgenHdrLen)
	b = o.AppendUint16(b, nfnlSubsysNFTables<<8|nftMsgGetGen)
	b = o.AppendUint16(b, nlmFRequest)
	b = o.AppendUint32(b, seq)
	b = o.AppendUint32(b, 0) // port id: the kernel fills it in
	return append(b, 0, nfnetlinkV0, 0, 0)
}

// parseNFNL decodes the nftables messages in one netlink datagram.
// Messages of other nfnetlink subsystems are skipped. It never panics; on
// a malformed message it returns what it decoded before it and an error.
func parseNFNL(b []byte, o nfnlByteOrder) ([]nftMsg, error) {
	var out []nftMsg
	for len(b) > 0 {
		if len(b) < nlmsgHdrLen {
			return out, errNFNLTruncated
		}
		l := o.Uint32(b[0:4])
		typ := o.Uint16(b[4:6])
		seq := o.Uint32(b[8:12])
		if l < nlmsgHdrLen || uint64(l) > uint64(len(b)) {
			return out, errNFNLTruncated
		}
		payload := b[nlmsgHdrLen:l]
		if next := nlAlign(int(l)); next < len(b) {
			b = b[next:]
		} else {
			b = nil
		}
		switch {
		case typ == nlmsgError:
			if len(payload) < 4 {
				return out, errNFNLTruncated
			}
			e := int32(o.Uint32(payload[0:4]))
			out = append(out, nftMsg{Seq: seq, Reply: true, Errno: -e})
			continue
		case typ == nlmsgOverrun:
			out = append(out, nftMsg{Seq: seq, Overrun: true})
			continue
		case typ>>8 != nfnlSubsysNFTables:
			continue // NLMSG_NOOP, NLMSG_DONE, other subsystems
		}
		if len(payload) < nfgenHdrLen {
			return out, errNFNLTruncated
		}
		m := nftMsg{Type: uint8(typ), Family: payload[0], Seq: seq}
		if err := parseNFTAttrs(&m, payload[nfgenHdrLen:], o); err != nil {
			return out, err
		}
		out = append(out, m)
	}
	return out, nil
}

// parseNFTAttrs fills in the attributes of m that the codec knows.
func parseNFTAttrs(m *nftMsg, b []byte, o nfnlByteOrder) error {
	for len(b) >= nlaHdrLen {
		al := int(o.Uint16(b[0:2]))
		at := o.Uint16(b[2:4]) & nlaTypeMask
		if al < nlaHdrLen || al > len(b) {
			return errNFNLTruncated
		}
		v := b[nlaHdrLen:al]
		if m.Type == nftMsgNewGen {
			switch at {
			case nftaGenID:
				if len(v) < 4 {
					return fmt.Errorf("%w: NFTA_GEN_ID of %d bytes", errNFNLTruncated, len(v))
				}
				m.Gen = binary.BigEndian.Uint32(v)
			case nftaGenPID:
				if len(v) < 4 {
					return fmt.Errorf("%w: NFTA_GEN_PROC_PID of %d bytes", errNFNLTruncated, len(v))
				}
				m.PID = binary.BigEndian.Uint32(v)
			case nftaGenComm:
				m.Comm = cString(v)
			}
		} else if at == nftaTableName {
			m.Table = cString(v)
		}
		next := nlAlign(al)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return nil
}

// cString returns b up to its first NUL.
func cString(b []byte) string {
	for i, c := range b {
		if c == 0 {
			return string(b[:i])
		}
	}
	return string(b)
}

// isRulesetChange reports whether m is a notification of a committed change
// to the ruleset (an object created, changed or deleted), as opposed to a
// generation message, a trace or a reply.
func (m nftMsg) isRulesetChange() bool {
	return !m.Reply && !m.Overrun && m.Type != nftMsgNewGen && m.Type != nftMsgTrace &&
		m.Type != nftMsgGetGen
}
