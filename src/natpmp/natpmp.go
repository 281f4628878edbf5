// Package natpmp encodes and decodes NAT Port Mapping Protocol messages
// (NAT-PMP, RFC 6886).
//
// It is a pure codec: it performs no I/O, reads no clock and never panics on
// short or hostile input. A server reads a datagram from ServerPort, calls
// ParseRequest, decides what to do, and writes Response.AppendTo back to the
// sender. Address-change announcements (RFC 6886 section 3.2.1) are ordinary
// Responses for OpPublicAddress sent to 224.0.0.1:ClientPort.
//
// NAT-PMP and PCP (RFC 6887) share port 5351; the first octet of a request
// (Version) tells them apart. Requests whose first octet is not 0 make
// ParseRequest return ErrUnsupportedVersion, so a dispatcher should hand
// version 2 datagrams to the pcp package before calling this one.
package natpmp

import "errors"

// Version is the NAT-PMP protocol version carried in the first octet of every
// request and response (RFC 6886 section 3).
const Version = 0

// Opcodes (RFC 6886 sections 3.2 and 3.3).
const (
	// OpPublicAddress asks for the gateway's external IPv4 address.
	OpPublicAddress = 0
	// OpMapUDP creates, renews or deletes a UDP mapping.
	OpMapUDP = 1
	// OpMapTCP creates, renews or deletes a TCP mapping.
	OpMapTCP = 2
)

// ResponseBit is added to the request opcode in a response: a response to
// opcode X carries opcode 128+X (RFC 6886 section 3.2).
const ResponseBit = 128

// Result codes (RFC 6886 section 3.5).
const (
	ResultSuccess            = 0
	ResultUnsupportedVersion = 1
	// ResultNotAuthorized means the gateway supports mapping but the
	// function is disabled or refused for this client.
	ResultNotAuthorized = 2
	// ResultNetworkFailure means, for example, that the gateway has no
	// external address yet.
	ResultNetworkFailure = 3
	// ResultOutOfResources means the gateway cannot create more mappings.
	ResultOutOfResources    = 4
	ResultUnsupportedOpcode = 5
)

// Ports (RFC 6886 sections 3.1 and 3.2.1). Requests go to ServerPort on the
// gateway; announcements go to ClientPort on 224.0.0.1.
const (
	ServerPort = 5351
	ClientPort = 5350
)

// Message sizes on the wire (RFC 6886 sections 3.2 and 3.3).
const (
	publicAddressRequestSize  = 2
	mapRequestSize            = 12
	publicAddressResponseSize = 12
	mapResponseSize           = 16
)

// Errors returned by ParseRequest and ParseResponse. They are returned as is
// (not wrapped), so callers may compare with == or errors.Is.
var (
	// ErrShort means the message is shorter than its opcode requires. A
	// server drops such a request without answering.
	ErrShort = errors.New("natpmp: message too short")

	// ErrResponse means ParseRequest was given a message with the response
	// bit set. A server drops it without answering, which also stops two
	// gateways answering each other forever.
	ErrResponse = errors.New("natpmp: message is a response")

	// ErrNotResponse means ParseResponse was given a message without the
	// response bit set.
	ErrNotResponse = errors.New("natpmp: message is not a response")

	// ErrUnsupportedVersion means the first octet is not Version. From
	// ParseRequest, a server answers with ResultUnsupportedVersion (RFC 6886
	// section 3.5); the returned Request has Op filled in.
	ErrUnsupportedVersion = errors.New("natpmp: unsupported version")

	// ErrUnsupportedOpcode means the opcode is not one of OpPublicAddress,
	// OpMapUDP or OpMapTCP. A server answers with ResultUnsupportedOpcode;
	// the returned Request has Op filled in.
	ErrUnsupportedOpcode = errors.New("natpmp: unsupported opcode")
)
