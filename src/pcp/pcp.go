// Package pcp encodes and decodes Port Control Protocol messages (PCP,
// RFC 6887), including the DESCRIPTION option of RFC 7220.
//
// It is a pure codec: it performs no I/O, reads no clock and never panics on
// short or hostile input. A server reads a datagram from ServerPort and calls
// ParseRequest. On success it acts on the Request and writes
// Response.AppendTo back; on a *ParseError it either drops the datagram
// (Drop) or answers with the error's Result, for example with
// AppendErrorResponse, which echoes the request as RFC 6887 section 7.3
// asks.
//
// ParseRequest checks syntax only. Checks that need context stay with the
// caller: comparing the client address field with the datagram's source
// address (ADDRESS_MISMATCH, RFC 6887 section 8.3), authorising THIRD_PARTY,
// and the MAP field rules of section 11 (protocol, ports, lifetime).
//
// Addresses are 16 bytes on the wire; IPv4 addresses travel as IPv4-mapped
// IPv6 addresses (::ffff:a.b.c.d, RFC 6887 section 5). This package unmaps
// them to 4-byte netip.Addr values when parsing and maps them back when
// encoding; see AddrFrom16 and AddrTo16.
//
// NAT-PMP (RFC 6886, version 0) shares port 5351. A dispatcher should hand
// version 0 datagrams to the natpmp package; ParseRequest answers any
// version other than 2 with UNSUPP_VERSION.
package pcp

import "strconv"

// Version is the PCP version this package speaks (RFC 6887 section 7.1).
const Version = 2

// Ports (RFC 6887 section 19.1). Requests go to ServerPort on the server;
// unsolicited ANNOUNCE responses go to ClientPort.
const (
	ServerPort = 5351
	ClientPort = 5350
)

// MaxMessageSize is the largest PCP message, request or response, in bytes
// (RFC 6887 section 7). Every message is also a multiple of 4 bytes.
const MaxMessageSize = 1100

// Sizes of fixed parts of a message (RFC 6887 sections 7.1, 7.2, 7.3, 11.1
// and 12.1).
const (
	// RequestHeaderSize is the size of the common request header.
	RequestHeaderSize = 24
	// ResponseHeaderSize is the size of the common response header.
	ResponseHeaderSize = 24
	// OptionHeaderSize is the size of an option header (code, reserved,
	// length).
	OptionHeaderSize = 4
	// MapPayloadSize is the size of the MAP opcode payload, in requests
	// and responses.
	MapPayloadSize = 36
	// PeerPayloadSize is the size of the PEER opcode payload.
	PeerPayloadSize = 56
)

// Opcodes (RFC 6887 section 19.2).
const (
	OpAnnounce = 0
	OpMap      = 1
	OpPeer     = 2
)

// ResponseBit is the R bit: the top bit of the opcode octet, set in
// responses and clear in requests (RFC 6887 section 7.1).
const ResponseBit = 0x80

// Result codes (RFC 6887 section 7.4).
const (
	ResultSuccess               = 0
	ResultUnsuppVersion         = 1
	ResultNotAuthorized         = 2
	ResultMalformedRequest      = 3
	ResultUnsuppOpcode          = 4
	ResultUnsuppOption          = 5
	ResultMalformedOption       = 6
	ResultNetworkFailure        = 7
	ResultNoResources           = 8
	ResultUnsuppProtocol        = 9
	ResultUserExQuota           = 10
	ResultCannotProvideExternal = 11
	ResultAddressMismatch       = 12
	ResultExcessiveRemotePeers  = 13
)

// Option codes (RFC 6887 section 13 and RFC 7220 section 4). Codes 0-127
// are mandatory to process, 128-255 optional to process (RFC 6887 section
// 7.3).
const (
	OptThirdParty    = 1
	OptPreferFailure = 2
	OptFilter        = 3
	OptDescription   = 128
)

// Option data sizes (RFC 6887 sections 13.1, 13.2 and 13.3).
const (
	thirdPartyLen    = 16
	preferFailureLen = 0
	filterLen        = 20
)

var resultNames = [...]string{
	ResultSuccess:               "SUCCESS",
	ResultUnsuppVersion:         "UNSUPP_VERSION",
	ResultNotAuthorized:         "NOT_AUTHORIZED",
	ResultMalformedRequest:      "MALFORMED_REQUEST",
	ResultUnsuppOpcode:          "UNSUPP_OPCODE",
	ResultUnsuppOption:          "UNSUPP_OPTION",
	ResultMalformedOption:       "MALFORMED_OPTION",
	ResultNetworkFailure:        "NETWORK_FAILURE",
	ResultNoResources:           "NO_RESOURCES",
	ResultUnsuppProtocol:        "UNSUPP_PROTOCOL",
	ResultUserExQuota:           "USER_EX_QUOTA",
	ResultCannotProvideExternal: "CANNOT_PROVIDE_EXTERNAL",
	ResultAddressMismatch:       "ADDRESS_MISMATCH",
	ResultExcessiveRemotePeers:  "EXCESSIVE_REMOTE_PEERS",
}

// ResultString returns the RFC 6887 name of a result code, such as
// "MALFORMED_OPTION", or "RESULT_<n>" for a code it does not know.
func ResultString(code uint8) string {
	if int(code) < len(resultNames) {
		return resultNames[code]
	}
	return "RESULT_" + strconv.Itoa(int(code))
}

// IsLongLifetimeError reports whether code is a long-lifetime error in the
// sense of RFC 6887 section 7.4: one that will not go away soon by itself
// (the client should not retry for a long time, typically 30 minutes). It
// returns false for ResultSuccess, for the short-lifetime errors
// (NETWORK_FAILURE, NO_RESOURCES, USER_EX_QUOTA, CANNOT_PROVIDE_EXTERNAL)
// and for codes this package does not know.
func IsLongLifetimeError(code uint8) bool {
	switch code {
	case ResultUnsuppVersion, ResultNotAuthorized, ResultMalformedRequest,
		ResultUnsuppOpcode, ResultUnsuppOption, ResultMalformedOption,
		ResultUnsuppProtocol, ResultAddressMismatch, ResultExcessiveRemotePeers:
		return true
	}
	return false
}
