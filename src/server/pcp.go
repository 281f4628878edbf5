package server

import (
	"errors"
	"net/netip"
	"time"

	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/pcp"
)

// Error lifetimes (RFC 6887 section 7.2): how long a client should wait
// before retrying. Short errors are transient, long ones need a change on
// the client's side.
const (
	shortErrorLifetime = 30      // seconds
	longErrorLifetime  = 30 * 60 // seconds
)

func errorLifetime(result uint8) uint32 {
	if pcp.IsLongLifetimeError(result) {
		return longErrorLifetime
	}
	return shortErrorLifetime
}

// answerPCP answers a PCP datagram without AUTH option (handlePCP, in
// auth.go, removed and checked it); key is the name of the key that
// authenticated it, "" for none. It returns nil to drop.
func (s *Server) answerPCP(pkt []byte, src netip.AddrPort, key string) (resp []byte, isErr bool) {
	req, err := pcp.ParseRequest(pkt)
	if err != nil {
		var pe *pcp.ParseError
		if !errors.As(err, &pe) || pe.Drop {
			return nil, false
		}
		s.log.Debug("pcp request refused", "client", src.Addr().String(), "result", pcp.ResultString(pe.Result), "why", pe.Msg)
		return pcp.AppendErrorResponse(nil, pkt, pe.Result, errorLifetime(pe.Result), s.Epoch()), true
	}
	fail := func(result uint8) ([]byte, bool) {
		return pcp.AppendErrorResponse(nil, pkt, result, errorLifetime(result), s.Epoch()), true
	}
	// RFC 6887 section 8.3: the client address field must be the
	// packet's source (no NAT between client and server).
	if req.ClientAddr.Unmap() != src.Addr() {
		s.log.Info("pcp address mismatch", "source", src.Addr().String(), "claimed", req.ClientAddr.String())
		return fail(pcp.ResultAddressMismatch)
	}
	switch req.Op {
	case pcp.OpAnnounce:
		return pcp.Response{Op: pcp.OpAnnounce, Result: pcp.ResultSuccess, Epoch: s.Epoch()}.AppendTo(nil), false
	case pcp.OpMap:
		return s.handleMap(pkt, req, src, key)
	}
	return fail(pcp.ResultUnsuppOpcode)
}

func (s *Server) handleMap(pkt []byte, req pcp.Request, src netip.AddrPort, key string) ([]byte, bool) {
	fail := func(result uint8) ([]byte, bool) {
		return pcp.AppendErrorResponse(nil, pkt, result, errorLifetime(result), s.Epoch()), true
	}
	md := req.Map
	client := src.Addr()
	internal := client
	if req.ThirdParty.IsValid() {
		internal = req.ThirdParty.Unmap()
	}
	if !internal.Is4() {
		// Only IPv4 NAT is implemented.
		return fail(pcp.ResultUnsuppProtocol)
	}
	ext := s.cfg.ExternalAddr()
	if !ext.Is4() {
		return fail(pcp.ResultNetworkFailure)
	}
	if a := md.ExternalAddr; a.IsValid() && !a.IsUnspecified() && a.Unmap() != ext && req.PreferFailure {
		return fail(pcp.ResultCannotProvideExternal)
	}
	var filters []firewall.Filter
	for _, f := range req.Filters {
		if !f.Prefix.IsValid() {
			// Prefix length 0: "no filter", which also removes the
			// filters before it (RFC 6887 section 13.3).
			filters = nil
			continue
		}
		if !f.Prefix.Addr().Is4() {
			return fail(pcp.ResultMalformedOption)
		}
		filters = append(filters, firewall.Filter{Prefix: f.Prefix, Port: f.Port})
	}
	lr := lease.Request{
		Origin:         lease.OriginPCP,
		Client:         client,
		InternalAddr:   internal,
		InternalPort:   md.InternalPort,
		SuggestedPort:  md.ExternalPort,
		Lifetime:       time.Duration(req.Lifetime) * time.Second,
		Nonce:          md.Nonce,
		Auth:           key,
		Description:    req.Description,
		HasDescription: hasOption(req, pcp.OptDescription),
		Filters:        filters,
		PreferFailure:  req.PreferFailure,
	}
	if req.Lifetime == 0 && (md.InternalPort == 0 || md.Protocol == 0) {
		// Delete all of this client's mappings with this nonce, for
		// one protocol or (protocol 0) all of them.
		n := 0
		for _, p := range []firewall.Proto{firewall.TCP, firewall.UDP} {
			if md.Protocol != 0 && md.Protocol != uint8(p) {
				continue
			}
			for _, l := range s.m.ClientLeases(client) {
				if l.Proto == p && l.InternalAddr == internal && l.Origin == lease.OriginPCP && l.Nonce == md.Nonce && l.Auth == key {
					if _, err := s.m.Map(lease.Request{Origin: lease.OriginPCP, Proto: p, Client: client,
						InternalAddr: internal, InternalPort: l.InternalPort, Nonce: md.Nonce, Auth: key}); err != nil {
						return fail(pcpResult(err))
					}
					n++
				}
			}
		}
		s.log.Debug("pcp delete-all", "client", client.String(), "removed", n)
		return s.mapResponse(req, md, 0, 0, ext), false
	}
	if md.Protocol != uint8(firewall.TCP) && md.Protocol != uint8(firewall.UDP) {
		return fail(pcp.ResultUnsuppProtocol)
	}
	lr.Proto = firewall.Proto(md.Protocol)
	if md.InternalPort == 0 {
		// "All ports" mappings are not offered.
		return fail(pcp.ResultNotAuthorized)
	}
	l, err := s.m.Map(lr)
	if err != nil {
		return fail(pcpResult(err))
	}
	if req.Lifetime == 0 {
		port := l.ExternalPort
		if port == 0 {
			port = md.ExternalPort
		}
		return s.mapResponse(req, md, port, 0, ext), false
	}
	return s.mapResponse(req, md, l.ExternalPort, uint32(l.Lifetime/time.Second), ext), false
}

// mapResponse builds a successful MAP response that echoes the options the
// server processed (RFC 6887 section 7.3).
func (s *Server) mapResponse(req pcp.Request, md pcp.MapData, port uint16, lifetime uint32, ext netip.Addr) []byte {
	md.ExternalPort = port
	md.ExternalAddr = ext
	var opts []pcp.Option
	for _, o := range req.Options {
		switch o.Code {
		case pcp.OptThirdParty, pcp.OptPreferFailure, pcp.OptFilter, pcp.OptDescription:
			opts = append(opts, o)
		}
	}
	return pcp.Response{
		Op:       pcp.OpMap,
		Result:   pcp.ResultSuccess,
		Lifetime: lifetime,
		Epoch:    s.Epoch(),
		Map:      md,
		Options:  opts,
	}.AppendTo(nil)
}

func hasOption(req pcp.Request, code uint8) bool {
	for _, o := range req.Options {
		if o.Code == code {
			return true
		}
	}
	return false
}

// pcpResult maps a lease error to a PCP result code (RFC 6887 section 7.4).
func pcpResult(err error) uint8 {
	switch {
	case errIs(err, lease.ErrNotAuthorized, lease.ErrDenied):
		return pcp.ResultNotAuthorized
	case errIs(err, lease.ErrQuota):
		return pcp.ResultUserExQuota
	case errIs(err, lease.ErrNoResources):
		return pcp.ResultNoResources
	case errIs(err, lease.ErrCannotProvideExternal):
		return pcp.ResultCannotProvideExternal
	case errIs(err, lease.ErrUnsupportedProtocol):
		return pcp.ResultUnsuppProtocol
	case errIs(err, lease.ErrBadRequest):
		return pcp.ResultMalformedRequest
	}
	return pcp.ResultNoResources
}
