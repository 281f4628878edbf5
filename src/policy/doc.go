// Package policy decides which port mappings dpfd may create.
//
// A [Policy] is an ordered list of [Rule]s. A request is compared with each
// rule in turn and the first rule that matches decides: [Allow] or [Deny].
// A request that matches no rule is denied (deny by default).
//
// A rule matches a [Request] when every one of its conditions holds:
//
//   - the internal address is in one of Rule.IntAddrs, or, when Rule.UseLAN
//     is set, in one of Policy.LANPrefixes (IntAddrs empty and UseLAN false:
//     any internal address);
//   - the client (the host that sent the request) is in one of Rule.Clients
//     (empty: any client);
//   - the internal port is in Rule.IntPorts and the external port in
//     Rule.ExtPorts (inclusive ranges; use [AnyPorts] for "any");
//   - the protocol equals Rule.Proto, or Rule.Proto is [ProtoAny];
//   - when Rule.AuthAny or Rule.AuthKeys is set, the request was
//     authenticated (Request.Key is not empty) by any key, or by one of
//     the keys named in AuthKeys.
//
// A request is "third party" when its client differs from its internal
// address (PCP THIRD_PARTY option, RFC 6887 section 13.1). An Allow rule
// without Rule.ThirdParty set denies a third-party request that it matches;
// first match still wins, so later rules are not consulted.
//
// The package is pure: no I/O, no clocks, no global state. A Policy is not
// modified by its methods and may be shared by concurrent readers.
package policy
