// Package client opens ports on the LAN's gateway with PCP (RFC 6887) or,
// for older gateways, NAT-PMP (RFC 6886), and keeps them open: the client
// side of DPF's dpfd, usable with any gateway that speaks either protocol.
//
// # Two levels
//
// Listen and ListenPacket are drop-in replacements for net.Listen and
// net.ListenPacket that also map the socket's port at the gateway:
//
//	ln, err := client.Listen(ctx, "tcp", ":8080")
//	if err != nil { ... }          // bind failure, refusal, no gateway
//	defer ln.Close()               // releases the mapping too
//	fmt.Println("reachable at", ln.PublicAddr())
//
// Client and Mapping give full control: one Client per gateway, shared by
// any number of mappings (pass it to Listen with WithClient), each with its
// own Events channel.
//
// # How a mapped socket differs from a plain one
//
//   - Addr (LocalAddr for PacketConn) stays the local address, as for any
//     socket. PublicAddr is the address and port the gateway granted,
//     which outside peers use. The external port may differ from the local
//     one and from WithExternalPort's suggestion: always use PublicAddr.
//   - Listen binds first, then asks the gateway, and returns only when the
//     mapping is granted. A refusal or an unreachable gateway is an error
//     from Listen, not later (the socket is then closed): errors.Is it
//     against ErrNotAuthorized, ErrNoResources, ErrGatewayUnreachable and
//     the others. AllowUnmapped keeps the socket anyway.
//   - Sockets bound to a loopback address are refused with ErrUnmappable:
//     nothing outside can reach them.
//   - Later problems do not make Accept or ReadFrom fail; they arrive as
//     Events on Mapping().Events(): Renewed, Changed, Lost, Restored and
//     finally Released.
//   - The mapping is renewed in the background at a random point between
//     1/2 and 5/8 of its granted lifetime (RFC 6887 section 11.2.1).
//   - When the gateway restarts and forgets its mappings, the client
//     notices, from the epoch in the next response or from the
//     announcement the gateway multicasts when it starts, and re-creates
//     every mapping after a random delay of up to five seconds. The
//     gateway may grant another external port then: a Lost event, then
//     Restored and, if the address or port differs, Changed with the new
//     PublicAddr.
//   - Close deletes the mapping at the gateway before closing the socket,
//     waiting at most ReleaseTimeout (2 s). If the gateway does not answer
//     in time the socket is closed anyway and the mapping lapses at the end
//     of its lifetime (two hours by default, or what the gateway granted).
//     A process that dies without Close leaves its mappings to lapse the
//     same way.
//
// # Protocol details
//
// The gateway is the default IPv4 route's gateway (from /proc/net/route),
// port 5351, unless Config.Gateway says otherwise. The client tries PCP
// first and falls back to NAT-PMP when the gateway answers "unsupported
// version", remembering the choice until the gateway changes or restarts;
// Config.Force picks one. Requests are retransmitted as the RFCs say: PCP
// from 3 s doubling to 1024 s without limit, so the context bounds them;
// NAT-PMP from 250 ms doubling, nine attempts. Every mapping has its own
// random PCP nonce for its whole life, and responses that do not match the
// request (opcode, nonce, protocol, internal port) are ignored.
//
// # Authentication
//
// With Config.Key set (a key from dpfd genkey, configured on the router in
// a "config key" section), every PCP request carries DPF's AUTH option, an
// HMAC-SHA256 over the request with a fresh sequence number for each
// transmission, and only answers signed with the same key can grant a
// mapping. The client then speaks PCP only: never NAT-PMP, never unsigned
// PCP. A gateway without DPF authentication answers UNSUPP_OPTION and
// requests fail with ErrAuthUnsupported; a key the router does not accept
// gives ErrNotAuthorized. auth.go has the details.
package client
