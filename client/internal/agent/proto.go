package agent

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The line protocol between the preload shim (client/preload/dpf_preload.c)
// and the agent. One request per unix stream connection:
//
//	BIND <tcp|udp> <port> <inode> <pid>\n  answered by  OK <ip>:<port>\n,
//	                                       ERR <message>\n or SKIP <reason>\n
//	CLOSE <inode>\n                        no answer; a hint to poll now
const (
	opBind  = "BIND"
	opClose = "CLOSE"

	// maxLine bounds a request line; a real one is under 60 bytes.
	maxLine = 256
)

// request is a parsed request line.
type request struct {
	op    string // opBind or opClose
	proto string // BIND only
	port  uint16 // BIND only
	inode uint64
	pid   int // BIND only; for the log
}

var errBadRequest = errors.New("bad request")

// parseRequest parses one line, without its newline.
func parseRequest(line string) (request, error) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return request{}, errBadRequest
	}
	var r request
	var err error
	switch {
	case f[0] == opBind && len(f) == 5:
		r.op = opBind
		r.proto = f[1]
		if r.proto != "tcp" && r.proto != "udp" {
			return request{}, fmt.Errorf("%w: protocol %q", errBadRequest, f[1])
		}
		p, perr := strconv.ParseUint(f[2], 10, 16)
		if perr != nil || p == 0 {
			return request{}, fmt.Errorf("%w: port %q", errBadRequest, f[2])
		}
		r.port = uint16(p)
		if r.inode, err = parseInode(f[3]); err != nil {
			return request{}, err
		}
		pid, perr := strconv.Atoi(f[4])
		if perr != nil || pid <= 0 {
			return request{}, fmt.Errorf("%w: pid %q", errBadRequest, f[4])
		}
		r.pid = pid
	case f[0] == opClose && len(f) == 2:
		r.op = opClose
		if r.inode, err = parseInode(f[1]); err != nil {
			return request{}, err
		}
	default:
		return request{}, fmt.Errorf("%w: %.40q", errBadRequest, line)
	}
	return r, nil
}

func parseInode(s string) (uint64, error) {
	v, err := strconv.ParseUint(s, 10, 64)
	if err != nil || v == 0 {
		return 0, fmt.Errorf("%w: inode %q", errBadRequest, s)
	}
	return v, nil
}

func replyOK(ext netip.AddrPort) string { return "OK " + ext.String() + "\n" }
func replyErr(msg string) string        { return "ERR " + oneLine(msg) + "\n" }
func replySkip(reason string) string    { return "SKIP " + oneLine(reason) + "\n" }

// oneLine keeps a message on one line and short enough for the shim's
// buffer (256 bytes with the prefix).
func oneLine(s string) string {
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' {
			return ' '
		}
		return r
	}, s)
	if len(s) > 200 {
		s = s[:200]
	}
	return s
}
