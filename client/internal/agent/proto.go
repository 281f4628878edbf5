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
//	BIND <tcp|udp> <port> <inode> <pid> <requested>\n
//	                        answered by  OK <ip>:<port>\n,
//	                                     ERR <message>\n or SKIP <reason>\n
//	CLOSE <inode>\n         no answer; a hint to poll now
//
// In BIND, port is the socket's bound port and requested the port the
// program passed to bind(): 0 when it let the kernel choose, as client
// sockets do. listen() has no requested port; the shim sends the bound
// port. Older shims omit requested; fields after it are ignored, so that
// the shim may grow without breaking an older agent.
const (
	opBind  = "BIND"
	opClose = "CLOSE"

	// maxLine bounds a request line; a real one is under 70 bytes.
	maxLine = 256
)

// request is a parsed request line.
type request struct {
	op    string // opBind or opClose
	proto string // BIND only
	port  uint16 // BIND only
	inode uint64
	pid   int // BIND only; for the log
	// requested is the port the program asked bind() for (BIND only);
	// -1 when the shim did not say.
	requested int
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
	case f[0] == opBind && len(f) >= 5:
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
		r.requested = -1
		if len(f) > 5 {
			q, perr := strconv.ParseUint(f[5], 10, 16)
			if perr != nil {
				return request{}, fmt.Errorf("%w: requested port %q", errBadRequest, f[5])
			}
			r.requested = int(q)
		}
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

// clientBind reports whether r announces a UDP socket the program let the
// kernel give a port (bind() to port 0). Such a socket is most likely a
// client's (libuv, Java and resolvers bind 0.0.0.0:0 before they send),
// so it is judged as if polling had found it.
func (r request) clientBind() bool { return r.proto == "udp" && r.requested == 0 }

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
