// Package syslog is a [slog.Handler] that sends each record to the local
// syslog daemon as one datagram on its socket (/dev/log), with the
// record's level as the syslog severity, so that a log reader shows every
// line at its own level. On OpenWrt the reader is logd (ubox), which
// takes datagrams of the RFC 3164 form
//
//	<PRI>Mmm dd hh:mm:ss ident[pid]: message
//
// stores PRI as the priority, drops the 16-byte timestamp (it stamps the
// line itself) and keeps "ident[pid]: message". The message is the text
// [slog.TextHandler] writes (level=INFO msg=... key=value ...) without
// its time, which syslog already records.
//
// When the socket cannot be reached (no syslog daemon yet, or one that is
// restarting) the line goes to the fallback writer, with its time, as
// slog.TextHandler writes it; the next record dials the socket again. A
// syslog daemon that restarts makes a new socket: the send on the old one
// fails, and the handler dials the new one and sends again.
package syslog

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"
)

// DefaultPath is the local syslog socket.
const DefaultPath = "/dev/log"

// Severities (RFC 5424 section 6.2.1) and the facility dpfd logs as.
const (
	SevErr     = 3
	SevWarning = 4
	SevInfo    = 6
	SevDebug   = 7

	FacilityDaemon = 3
)

// writeTimeout bounds one send: a syslog daemon that stops reading must
// not stop the program. After a send timed out, lines go to the fallback
// for stallPause before the socket is tried again.
const (
	writeTimeout = time.Second
	stallPause   = 5 * time.Second
)

// Options configure a Handler.
type Options struct {
	// Path is the syslog socket; empty means DefaultPath.
	Path string
	// Tag is the ident written before the process id; empty means the
	// program's name.
	Tag string
	// Level is the minimum level logged (a *slog.LevelVar to change it
	// later); nil means slog.LevelInfo.
	Level slog.Leveler
	// Fallback receives the lines the socket does not take; nil
	// discards them.
	Fallback io.Writer
}

// Handler is the slog.Handler. Its methods are safe for concurrent use.
type Handler struct {
	text slog.Handler // formats a record and writes it to out, in one Write
	out  *sink
}

// New returns a Handler. It dials the socket when the first record is
// logged.
func New(opts Options) *Handler {
	s := &sink{path: opts.Path, tag: opts.Tag, pid: os.Getpid(), fallback: opts.Fallback}
	if s.path == "" {
		s.path = DefaultPath
	}
	if s.tag == "" && len(os.Args) > 0 {
		s.tag = filepath.Base(os.Args[0])
	}
	if s.fallback == nil {
		s.fallback = io.Discard
	}
	text := slog.NewTextHandler(s, &slog.HandlerOptions{Level: opts.Level, ReplaceAttr: dropTime})
	return &Handler{text: text, out: s}
}

// dropTime removes the record's time from the message: syslog has it.
func dropTime(groups []string, a slog.Attr) slog.Attr {
	if len(groups) == 0 && a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}

// Priority returns the syslog priority of a record at level: facility
// daemon, and the severity of the level (below info: debug; below warn:
// info; below error: warning; else err).
func Priority(level slog.Level) int {
	sev := SevErr
	switch {
	case level < slog.LevelInfo:
		sev = SevDebug
	case level < slog.LevelWarn:
		sev = SevInfo
	case level < slog.LevelError:
		sev = SevWarning
	}
	return FacilityDaemon<<3 | sev
}

// Enabled reports whether level is at or above the handler's level.
func (h *Handler) Enabled(ctx context.Context, level slog.Level) bool {
	return h.text.Enabled(ctx, level)
}

// Handle sends r.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	h.out.pri, h.out.at = Priority(r.Level), r.Time
	if h.out.at.IsZero() {
		h.out.at = time.Now()
	}
	return h.text.Handle(ctx, r)
}

// WithAttrs returns a Handler that adds as to every record.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{text: h.text.WithAttrs(as), out: h.out}
}

// WithGroup returns a Handler that puts the attributes that follow in
// group name.
func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{text: h.text.WithGroup(name), out: h.out}
}

// Close closes the socket; a later record dials it again.
func (h *Handler) Close() error {
	h.out.mu.Lock()
	defer h.out.mu.Unlock()
	return h.out.hangUp()
}

// sink is the writer of the Handler's slog.TextHandler: each Write is one
// record (slog's handlers write a record in one call), which it sends with
// the priority and time Handle set.
type sink struct {
	path, tag string
	pid       int
	fallback  io.Writer

	mu   sync.Mutex // held by Handle across the TextHandler's Write
	pri  int
	at   time.Time
	conn net.Conn // nil when not connected
	// stalled is when the last send timed out; the socket is left alone
	// until stallPause after it.
	stalled time.Time
}

// Write sends one formatted record. Handle holds s.mu.
func (s *sink) Write(p []byte) (int, error) {
	msg := bytes.TrimSuffix(p, []byte("\n"))
	line := make([]byte, 0, len(msg)+48+len(s.tag))
	line = append(line, '<')
	line = strconv.AppendInt(line, int64(s.pri), 10)
	line = append(line, '>')
	line = s.at.AppendFormat(line, time.Stamp)
	line = append(line, ' ')
	line = append(line, s.tag...)
	line = append(line, '[')
	line = strconv.AppendInt(line, int64(s.pid), 10)
	line = append(line, "]: "...)
	line = append(line, msg...)
	line = append(line, '\n')
	if s.send(line) {
		return len(p), nil
	}
	fb := make([]byte, 0, len(p)+40)
	fb = append(fb, slog.TimeKey+"="...)
	fb = s.at.AppendFormat(fb, "2006-01-02T15:04:05.000Z07:00")
	fb = append(fb, ' ')
	fb = append(fb, msg...)
	fb = append(fb, '\n')
	if _, err := s.fallback.Write(fb); err != nil {
		return 0, err
	}
	return len(p), nil
}

// send sends line on the socket, dialling it if needed, and reports
// whether it went. A send that fails for another reason than the time
// limit (the syslog daemon closed its socket: it was restarted) is tried
// once more on a new connection; one that timed out (the syslog daemon
// does not read) is not, and the socket rests for stallPause.
func (s *sink) send(line []byte) bool {
	if !s.stalled.IsZero() && time.Since(s.stalled) < stallPause {
		return false
	}
	for range 2 {
		if s.conn == nil {
			c, err := net.DialTimeout("unixgram", s.path, writeTimeout)
			if err != nil {
				return false
			}
			s.conn = c
		}
		s.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		_, err := s.conn.Write(line)
		if err == nil {
			return true
		}
		s.hangUp()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			s.stalled = time.Now()
			return false
		}
	}
	return false
}

func (s *sink) hangUp() error {
	if s.conn == nil {
		return nil
	}
	err := s.conn.Close()
	s.conn = nil
	return err
}
