// Package nattype discovers how the NATs and firewalls between this host and
// the internet treat UDP, using the NAT behaviour discovery tests of RFC 5780
// against a STUN server that supports them (two IP addresses and two ports,
// announced in OTHER-ADDRESS), and turns the answer into a verdict on whether
// DPF can make this host reachable from the internet.
//
// # Tests
//
// Probe runs two sessions, each on a UDP socket of its own that it owns
// (pion/stun only encodes and decodes the messages):
//
//   - Mapping (RFC 5780 section 4.3). Test I asks the server's primary address
//     for the mapped (server-reflexive) address. If that is the local address
//     there is no NAT. Otherwise test II asks the alternate IP address on the
//     primary port and test III the alternate IP and port; comparing the
//     three mapped addresses gives Endpoint-Independent, Address-Dependent or
//     Address and Port-Dependent mapping.
//   - Filtering (RFC 5780 section 4.4). Test I again, then test II asks the
//     server to answer from its alternate IP and port (CHANGE-REQUEST) and
//     test III from its primary IP and alternate port. Which answers get
//     through gives Endpoint-Independent, Address-Dependent or Address and
//     Port-Dependent filtering. A test with no answer after retransmissions
//     counts as filtered.
//
// The filtering session uses a fresh socket (a new local port) on purpose:
// the mapping session has already sent to the alternate address, so on its
// port any stateful NAT would let the alternate address's answers in and
// look endpoint-independent. Running the filtering tests first on the same
// port does not work either: their unanswered inbound packets leave
// connection-tracking entries on NATs such as Linux's that make the later
// mapping tests see a different port.
//
// Requests are retransmitted as RFC 8489 section 6.2.1 (RFC 5389 section
// 7.2.1) describes: the interval starts at RTO and doubles, at most Rc = 7
// requests are sent, and the wait is cut short by Config.MaxWait per request,
// Config.Timeout for the whole probe and the caller's context. Answers are
// matched by transaction ID and by the address they come from; anything
// else arriving on the socket is ignored.
//
// # Verdict
//
// Classify combines a Result with what a PCP or NAT-PMP gateway reported
// (GatewayInfo) and says, in one sentence and one stable code, whether
// inbound connections can work: through DPF's port mappings, by hole
// punching, or not at all (carrier-grade NAT, double NAT).
package nattype
