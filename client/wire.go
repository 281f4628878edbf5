package client

import (
	"context"
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// This file holds the protocol exchanges: one request, its retransmissions
// and the validation of the answer, for PCP (RFC 6887) and NAT-PMP (RFC
// 6886). They use the codecs in src/pcp and src/natpmp and hold no client
// state beyond what they are given.

// mapParams is one MAP request as the wire needs it.
type mapParams struct {
	proto Protocol
	nonce [12]byte
	// laddr is the internal address to bind the request socket to; the
	// zero Addr means the local address the kernel picks toward the
	// gateway.
	laddr         netip.Addr
	port          uint16     // internal port
	suggested     uint16     // suggested external port, 0 for none
	suggestedAddr netip.Addr // suggested external address (PCP), zero for none
	lifetime      uint32     // seconds; 0 deletes the mapping
	desc          string     // PCP DESCRIPTION (RFC 7220), "" for none
}

// answer is what an exchange learned. have reports whether a valid answer
// (success or error) arrived, and so whether epoch and at mean anything.
type answer struct {
	have  bool
	epoch uint32    // the gateway's epoch (PCP Epoch Time, NAT-PMP SSSoE)
	at    time.Time // client time the answer arrived
	// lost is set by the Client when the epoch check showed state loss.
	lost bool

	internal netip.AddrPort // the request socket's address, with the internal port
	external netip.AddrPort // granted external address and port
	lifetime uint32         // granted lifetime in seconds
}

// pcpUnsuppVersion reports whether b is an "unsupported version" answer to
// a PCP request: from a NAT-PMP-only gateway, a NAT-PMP-format message
// (version 0, R bit, 16-bit result 1; at least 8 bytes, RFC 6886 section
// 3.5), or from a PCP gateway a header with result UNSUPP_VERSION (RFC 6887
// section 9). Either makes the client fall back to NAT-PMP.
func pcpUnsuppVersion(b []byte) bool {
	if len(b) >= 8 && b[0] == natpmp.Version && b[1]&natpmp.ResponseBit != 0 {
		return binary.BigEndian.Uint16(b[2:4]) == natpmp.ResultUnsupportedVersion
	}
	return len(b) >= pcp.ResponseHeaderSize && b[0] != natpmp.Version &&
		b[1]&pcp.ResponseBit != 0 && b[3] == pcp.ResultUnsuppVersion
}

// pcpMap sends a PCP MAP request (RFC 6887 section 11) and waits for the
// matching response: opcode MAP with the R bit, same nonce, protocol and
// internal port. Anything else is ignored. A header-only error response
// (24 bytes, which cannot echo the nonce) is accepted too, since a server
// that could not parse the request cannot echo it; the socket is connected,
// so only the gateway's address and port can send it. With a signer every
// transmission is signed and answers are checked as auth.go says.
func pcpMap(ctx context.Context, gw netip.AddrPort, irt time.Duration, now func() time.Time, sig *signer, p mapParams) (answer, error) {
	var ans answer
	tx := sig.newTx()
	build := func(local netip.AddrPort) ([]byte, error) {
		req := pcp.Request{
			Version:    pcp.Version,
			Op:         pcp.OpMap,
			Lifetime:   p.lifetime,
			ClientAddr: local.Addr(),
			Map: pcp.MapData{
				Nonce:        p.nonce,
				Protocol:     uint8(p.proto),
				InternalPort: p.port,
				ExternalPort: p.suggested,
				ExternalAddr: p.suggestedAddr,
			},
		}
		if p.lifetime == 0 {
			// Deletion: external port and address all zero.
			req.Map.ExternalPort, req.Map.ExternalAddr = 0, netip.Addr{}
		} else if !req.Map.ExternalAddr.IsValid() {
			// No preference for an IPv4 mapping is ::ffff:0.0.0.0 (RFC
			// 6887 section 11.1).
			req.Map.ExternalAddr = netip.IPv4Unspecified()
		}
		if p.desc != "" && p.lifetime > 0 {
			desc := p.desc
			if tx != nil {
				desc = truncateDesc(desc, maxSignedDesc)
			}
			req.Options = []pcp.Option{pcp.DescriptionOption(desc)}
		}
		if tx != nil {
			return tx.sign(req.AppendTo(nil))
		}
		return req.AppendTo(nil), nil
	}
	handle := func(b []byte) (bool, error) {
		if pcpUnsuppVersion(b) {
			re := &ResultError{Protocol: PCP, Op: pcp.OpMap, Code: pcp.ResultUnsuppVersion}
			if tx != nil {
				err, _ := unsignedRefusal(re)
				return true, err
			}
			return true, re
		}
		signed := tx == nil || tx.signed(b)
		if len(b) == pcp.ResponseHeaderSize && b[0] == pcp.Version && b[1] == pcp.ResponseBit|pcp.OpMap && b[3] != pcp.ResultSuccess {
			re := &ResultError{Protocol: PCP, Op: pcp.OpMap, Code: b[3], Lifetime: binary.BigEndian.Uint32(b[4:8])}
			if !signed {
				err, ok := unsignedRefusal(re)
				return ok, err
			}
			ans.have, ans.at = true, now()
			ans.epoch = binary.BigEndian.Uint32(b[8:12])
			return true, re
		}
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpMap {
			return false, nil
		}
		if r.Map.Nonce != p.nonce || r.Map.Protocol != uint8(p.proto) || r.Map.InternalPort != p.port {
			return false, nil
		}
		if !signed {
			if r.Result == pcp.ResultSuccess {
				return false, nil // a grant must be signed
			}
			err, ok := unsignedRefusal(&ResultError{Protocol: PCP, Op: pcp.OpMap, Code: r.Result, Lifetime: r.Lifetime})
			return ok, err
		}
		ans.have, ans.at, ans.epoch = true, now(), r.Epoch
		if r.Result != pcp.ResultSuccess {
			return true, &ResultError{Protocol: PCP, Op: pcp.OpMap, Code: r.Result, Lifetime: r.Lifetime}
		}
		ans.external = netip.AddrPortFrom(r.Map.ExternalAddr, r.Map.ExternalPort)
		ans.lifetime = r.Lifetime
		return true, nil
	}
	local, err := exchange(ctx, gw, p.laddr, pcpSchedule(irt), build, handle)
	ans.internal = netip.AddrPortFrom(local.Addr(), p.port)
	return ans, err
}

// pcpAnnounce sends a PCP ANNOUNCE request (RFC 6887 section 14.1), which
// creates nothing: it tells whether the gateway speaks PCP and gives its
// epoch. A Client with a key never sends it (see Client.Protocol).
func pcpAnnounce(ctx context.Context, gw netip.AddrPort, irt time.Duration, now func() time.Time) (answer, error) {
	var ans answer
	build := func(local netip.AddrPort) ([]byte, error) {
		return pcp.Request{Version: pcp.Version, Op: pcp.OpAnnounce, ClientAddr: local.Addr()}.AppendTo(nil), nil
	}
	handle := func(b []byte) (bool, error) {
		if pcpUnsuppVersion(b) {
			return true, &ResultError{Protocol: PCP, Op: pcp.OpAnnounce, Code: pcp.ResultUnsuppVersion}
		}
		r, err := pcp.ParseResponse(b)
		if err != nil || r.Op != pcp.OpAnnounce {
			return false, nil
		}
		ans.have, ans.at, ans.epoch = true, now(), r.Epoch
		if r.Result != pcp.ResultSuccess {
			return true, &ResultError{Protocol: PCP, Op: pcp.OpAnnounce, Code: r.Result, Lifetime: r.Lifetime}
		}
		return true, nil
	}
	_, err := exchange(ctx, gw, netip.Addr{}, pcpSchedule(irt), build, handle)
	return ans, err
}

// natpmpOp returns the NAT-PMP opcode mapping proto.
func natpmpOp(proto Protocol) uint8 {
	if proto == TCP {
		return natpmp.OpMapTCP
	}
	return natpmp.OpMapUDP
}

// natpmpMap sends a NAT-PMP mapping request (RFC 6886 section 3.3) and waits
// for the response with the same opcode and internal port. The response
// carries no external address; ans.external has the port only (the Client
// adds the address it learned with natpmpPublicAddr).
func natpmpMap(ctx context.Context, gw netip.AddrPort, irt time.Duration, now func() time.Time, p mapParams) (answer, error) {
	var ans answer
	op := natpmpOp(p.proto)
	build := func(netip.AddrPort) ([]byte, error) {
		req := natpmp.Request{Op: op, InternalPort: p.port, SuggestedExternalPort: p.suggested, Lifetime: p.lifetime}
		if p.lifetime == 0 {
			req.SuggestedExternalPort = 0 // deletion (RFC 6886 section 3.4)
		}
		return req.AppendTo(nil), nil
	}
	handle := func(b []byte) (bool, error) {
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != op || r.InternalPort != p.port {
			return false, nil
		}
		ans.have, ans.at, ans.epoch = true, now(), r.Epoch
		if r.Result != natpmp.ResultSuccess {
			return true, &ResultError{Protocol: NATPMP, Op: op, Code: uint8(min(r.Result, 255))}
		}
		ans.external = netip.AddrPortFrom(netip.Addr{}, r.ExternalPort)
		ans.lifetime = r.Lifetime
		return true, nil
	}
	local, err := exchange(ctx, gw, p.laddr, natpmpSchedule(irt), build, handle)
	ans.internal = netip.AddrPortFrom(local.Addr(), p.port)
	return ans, err
}

// natpmpPublicAddr asks for the gateway's external address (RFC 6886
// section 3.2); it is returned in ans.external with port 0.
func natpmpPublicAddr(ctx context.Context, gw netip.AddrPort, irt time.Duration, now func() time.Time) (answer, error) {
	var ans answer
	build := func(netip.AddrPort) ([]byte, error) {
		return natpmp.Request{Op: natpmp.OpPublicAddress}.AppendTo(nil), nil
	}
	handle := func(b []byte) (bool, error) {
		r, err := natpmp.ParseResponse(b)
		if err != nil || r.Op != natpmp.OpPublicAddress {
			return false, nil
		}
		ans.have, ans.at, ans.epoch = true, now(), r.Epoch
		if r.Result != natpmp.ResultSuccess {
			return true, &ResultError{Protocol: NATPMP, Op: natpmp.OpPublicAddress, Code: uint8(min(r.Result, 255))}
		}
		ans.external = netip.AddrPortFrom(r.ExternalAddr, 0)
		return true, nil
	}
	_, err := exchange(ctx, gw, netip.Addr{}, natpmpSchedule(irt), build, handle)
	return ans, err
}
