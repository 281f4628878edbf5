package agent

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/dpf-router/dpf/client/internal/sockdiag"
)

// acceptRetry is the pause after a failed accept (EMFILE and the like).
const acceptRetry = 50 * time.Millisecond

// serve answers the shim's requests on ln until ln is closed. Each
// connection's goroutine is added to wg.
func (a *agent) serve(ln *net.UnixListener, wg interface{ Go(func()) }) {
	for {
		c, err := ln.AcceptUnix()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil {
			a.log.Warn("agent socket accept", "err", err)
			select {
			case <-a.ctx.Done():
				return
			case <-time.After(acceptRetry):
			}
			continue
		}
		wg.Go(func() { a.handle(c) })
	}
}

// handle answers one request.
func (a *agent) handle(c *net.UnixConn) {
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(connTimeout))
	line, err := bufio.NewReaderSize(c, maxLine).ReadSlice('\n')
	if err != nil {
		a.log.Debug("agent socket read", "err", err)
		return
	}
	req, err := parseRequest(string(line[:len(line)-1]))
	if err != nil {
		a.log.Warn("agent socket", "err", err)
		c.SetWriteDeadline(time.Now().Add(connTimeout))
		c.Write([]byte(replyErr(err.Error())))
		return
	}
	if req.op == opClose {
		select {
		case a.kick <- struct{}{}:
		default: // a poll is due anyway
		}
		return
	}
	reply := a.bind(req)
	c.SetWriteDeadline(time.Now().Add(connTimeout))
	if _, err := c.Write([]byte(reply)); err != nil {
		a.log.Debug("agent socket write", "err", err)
	}
}

// unreachableWait replaces MapTimeout while the tracker reports the router
// unreachable: long enough for a router on the LAN that came back to
// answer, short enough that a program opening many sockets starts in
// seconds.
const unreachableWait = 250 * time.Millisecond

// bind handles a BIND: the kernel confirms the socket, decide judges it and
// the reply waits for the pinhole up to MapTimeout (unreachableWait while
// the router is unreachable).
func (a *agent) bind(r request) string {
	proto := uint8(sockdiag.ProtoTCP)
	if r.proto == "udp" {
		proto = sockdiag.ProtoUDP
	}
	socks, failed := a.dump(proto)
	if failed[r.proto] {
		return replyErr("cannot list " + r.proto + " sockets")
	}
	s, ok := socks[r.inode]
	if !ok {
		return replyErr(fmt.Sprintf("no bound %s socket with inode %d in the agent's network namespace", r.proto, r.inode))
	}
	// A UDP socket bound to port 0 is judged as polling would judge it
	// (the shim does not even ask about those; an older one might).
	announced := !r.clientBind()
	key, reason := decide(s, announced, a.host())
	if reason != "" {
		a.skip(r.inode, s, reason)
		return replySkip(reason)
	}
	a.unskip(r.inode)
	a.log.Debug("socket announced", "port", key, "local", s.Local, "inode", r.inode, "pid", r.pid, "requested", r.requested)
	a.t.add(r.inode, key, announced)
	timeout, why := a.cfg.MapTimeout, ""
	if a.t.unreachable() && unreachableWait < timeout {
		timeout, why = unreachableWait, " (the router was unreachable moments ago)"
	}
	ctx, cancel := context.WithTimeout(a.ctx, timeout)
	defer cancel()
	ext, err := a.t.wait(ctx, key)
	switch {
	case ctx.Err() != nil && errors.Is(err, ctx.Err()):
		return replyErr(fmt.Sprintf("no pinhole for %s within %v%s; still trying", key, timeout, why))
	case err != nil:
		return replyErr(fmt.Sprintf("pinhole for %s: %v", key, err))
	}
	return replyOK(ext)
}
