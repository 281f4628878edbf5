package pcp

import "errors"

// ParseError is the error ParseRequest returns for a request it cannot
// accept. It tells the server what to do: when Drop is true the datagram is
// silently discarded (RFC 6887 section 8.3) and Result is meaningless;
// otherwise the server answers with result code Result. Msg is a short
// human-readable reason for logs.
//
// Use errors.As to get at it:
//
//	var pe *pcp.ParseError
//	if errors.As(err, &pe) && !pe.Drop { ... answer pe.Result ... }
type ParseError struct {
	Result uint8
	Drop   bool
	Msg    string
}

// Error implements error.
func (e *ParseError) Error() string {
	if e.Drop {
		return "pcp: drop: " + e.Msg
	}
	return "pcp: " + ResultString(e.Result) + ": " + e.Msg
}

func dropError(msg string) *ParseError { return &ParseError{Drop: true, Msg: msg} }

func resultError(result uint8, msg string) *ParseError {
	return &ParseError{Result: result, Msg: msg}
}

// Errors returned by ParseResponse. They are returned as is (not wrapped).
var (
	// ErrShort means the message is shorter than the response header or
	// than the payload its opcode needs.
	ErrShort = errors.New("pcp: message too short")
	// ErrNotResponse means the R bit is clear.
	ErrNotResponse = errors.New("pcp: message is not a response")
	// ErrUnsupportedVersion means the version octet is not Version.
	ErrUnsupportedVersion = errors.New("pcp: unsupported version")
	// ErrMalformed means the message is longer than MaxMessageSize, is not
	// a multiple of 4 bytes, or holds an option running past its end.
	ErrMalformed = errors.New("pcp: malformed message")
)
