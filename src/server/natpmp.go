package server

import (
	"errors"
	"net/netip"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/natpmp"
)

// handleNATPMP answers a NAT-PMP (version 0) datagram. It returns nil to drop.
func (s *Server) handleNATPMP(pkt []byte, src netip.AddrPort) (resp []byte, isErr bool) {
	req, err := natpmp.ParseRequest(pkt)
	r := natpmp.Response{Op: req.Op, Epoch: s.Epoch(), InternalPort: req.InternalPort}
	switch {
	case errors.Is(err, natpmp.ErrUnsupportedVersion):
		r.Result = natpmp.ResultUnsupportedVersion
		return r.AppendTo(nil), true
	case errors.Is(err, natpmp.ErrUnsupportedOpcode):
		r.Result = natpmp.ResultUnsupportedOpcode
		return r.AppendTo(nil), true
	case err != nil:
		// Short datagrams and responses are dropped silently.
		return nil, false
	}
	ext := s.cfg.ExternalAddr()
	if req.Op == natpmp.OpPublicAddress {
		if !ext.Is4() {
			r.Result = natpmp.ResultNetworkFailure
			return r.AppendTo(nil), true
		}
		r.ExternalAddr = ext
		return r.AppendTo(nil), false
	}
	if s.natpmpRefused(req.Op) {
		// NAT-PMP cannot authenticate; auth.go says why the address
		// request above is still answered.
		r.Result = natpmp.ResultNotAuthorized
		return r.AppendTo(nil), true
	}
	if !ext.Is4() {
		r.Result = natpmp.ResultNetworkFailure
		return r.AppendTo(nil), true
	}
	proto := firewall.UDP
	if req.Op == natpmp.OpMapTCP {
		proto = firewall.TCP
	}
	client := src.Addr()
	if req.Lifetime == 0 && req.InternalPort == 0 {
		// RFC 6886 section 3.4: delete all of the client's mappings of
		// this protocol.
		if _, err := s.m.DeleteAll(client, proto, lease.OriginNATPMP); err != nil {
			r.Result = natpmpResult(err)
			return r.AppendTo(nil), true
		}
		return r.AppendTo(nil), false
	}
	l, err := s.m.Map(lease.Request{
		Origin:        lease.OriginNATPMP,
		Proto:         proto,
		Client:        client,
		InternalAddr:  client,
		InternalPort:  req.InternalPort,
		SuggestedPort: req.SuggestedExternalPort,
		Lifetime:      time.Duration(req.Lifetime) * time.Second,
	})
	if err != nil {
		r.Result = natpmpResult(err)
		return r.AppendTo(nil), true
	}
	if req.Lifetime == 0 {
		// A deletion is answered with external port and lifetime 0.
		return r.AppendTo(nil), false
	}
	r.ExternalPort = l.ExternalPort
	r.Lifetime = uint32(l.Lifetime / time.Second)
	return r.AppendTo(nil), false
}

// natpmpResult maps a lease error to a NAT-PMP result code (RFC 6886
// section 3.5).
func natpmpResult(err error) uint16 {
	switch {
	case errIs(err, lease.ErrNotAuthorized, lease.ErrDenied, lease.ErrBadRequest):
		return natpmp.ResultNotAuthorized
	case errIs(err, lease.ErrQuota, lease.ErrNoResources, lease.ErrCannotProvideExternal):
		return natpmp.ResultOutOfResources
	case errIs(err, lease.ErrUnsupportedProtocol):
		return natpmp.ResultUnsupportedOpcode
	}
	return natpmp.ResultOutOfResources
}
