package config

import (
	"errors"
	"strconv"
)

// ErrUnwritable is wrapped by the error [File.WriteTo] returns for a File
// that cannot be written as UCI text such that it parses back the same (an
// invalid name or type, or a value count that does not fit the option kind).
var ErrUnwritable = errors.New("config: file cannot be written as UCI")

// Error is a problem with the content of a configuration file: a syntax
// error from [Parse] or a bad or missing value from [FromFile].
type Error struct {
	File   string // file name as given to Parse; may be empty
	Line   int    // 1-based line, 0 when the problem is not on one line (say, a missing section)
	Option string // option name, empty when the problem is not about one option
	Msg    string // what is wrong, without file, line or option
}

// Error returns "FILE:LINE: option NAME: MSG". The option part is left out
// when Option is empty, ":LINE" when Line is 0, and "FILE:LINE: " when both
// File is empty and Line is 0.
func (e *Error) Error() string {
	s := e.File
	if e.Line > 0 {
		s += ":" + strconv.Itoa(e.Line)
	}
	if s != "" {
		s += ": "
	}
	if e.Option != "" {
		s += "option " + e.Option + ": "
	}
	return s + e.Msg
}
