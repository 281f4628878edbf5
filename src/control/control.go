// Package control is dpfd's local control API: JSON requests and responses,
// one per line, over a unix socket that only root can open (mode 0600).
//
// A request is {"method": "list", "params": {...}}; the response is
// {"result": ...} or {"error": "..."}. The dpfd CLI, the rpcd plugin and
// tests are its clients; none of them touches the firewall or the store
// while the daemon runs.
package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Request is one call.
type Request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Response answers a Request: exactly one of Result and Error is set.
type Response struct {
	Result json.RawMessage `json:"result,omitempty"`
	Error  string          `json:"error,omitempty"`
}

// Handler answers a method call. The returned value is marshalled as the
// result; an error becomes the response's error text.
type Handler func(ctx context.Context, method string, params json.RawMessage) (any, error)

// ErrNotRunning is returned by Call when nothing listens on the socket.
var ErrNotRunning = errors.New("dpfd is not running (no control socket)")

// ErrInUse is returned by Listen when another live process serves the socket.
var ErrInUse = errors.New("control socket is in use by a running dpfd")

// Timeouts. A client that sends nothing is dropped so it cannot hold a
// connection open; a call is bounded so the CLI never hangs.
const (
	readTimeout = 10 * time.Second
	callTimeout = 10 * time.Second
	maxRequest  = 64 << 10
)

// Listener serves the control socket.
type Listener struct {
	ln   *net.UnixListener
	path string
	wg   sync.WaitGroup
}

// Listen creates the socket at path with mode 0600 (its directory is created
// 0755 if missing). A stale socket left by a crashed dpfd is replaced; one
// that a live process answers on is not (ErrInUse).
func Listen(path string) (*Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("creating socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("%s: %w", path, ErrInUse)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode().Type() != fs.ModeSocket {
			return nil, fmt.Errorf("%s exists and is not a socket; refusing to replace it", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("removing stale socket: %w", err)
		}
	}
	// umask so the socket is never, even briefly, reachable by others.
	old := syscall.Umask(0o077)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	syscall.Umask(old)
	if err != nil {
		return nil, fmt.Errorf("listening on %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		ln.Close()
		return nil, err
	}
	ln.SetUnlinkOnClose(true)
	return &Listener{ln: ln, path: path}, nil
}

// Serve answers connections with h until ctx is done, then closes the
// listener (removing the socket) and waits for open connections.
func (l *Listener) Serve(ctx context.Context, h Handler, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	go func() {
		<-ctx.Done()
		l.ln.Close()
	}()
	for {
		c, err := l.ln.AcceptUnix()
		if err != nil {
			if ctx.Err() == nil && !errors.Is(err, net.ErrClosed) {
				log.Warn("control accept", "err", err)
				continue
			}
			break
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			serveConn(ctx, c, h, log)
		}()
	}
	l.wg.Wait()
}

func serveConn(ctx context.Context, c *net.UnixConn, h Handler, log *slog.Logger) {
	defer c.Close()
	r := bufio.NewReaderSize(c, 4096)
	enc := json.NewEncoder(c)
	for {
		c.SetReadDeadline(time.Now().Add(readTimeout))
		line, err := readLine(r)
		if err != nil {
			return
		}
		var req Request
		var resp Response
		if err := json.Unmarshal(line, &req); err != nil {
			resp.Error = "bad request: " + err.Error()
		} else if v, err := h(ctx, req.Method, req.Params); err != nil {
			resp.Error = err.Error()
		} else if b, err := json.Marshal(v); err != nil {
			resp.Error = "encoding result: " + err.Error()
		} else {
			resp.Result = b
		}
		c.SetWriteDeadline(time.Now().Add(readTimeout))
		if err := enc.Encode(resp); err != nil {
			log.Debug("control write", "err", err)
			return
		}
	}
}

func readLine(r *bufio.Reader) ([]byte, error) {
	var out []byte
	for {
		chunk, isPrefix, err := r.ReadLine()
		if err != nil {
			return nil, err
		}
		out = append(out, chunk...)
		if len(out) > maxRequest {
			return nil, errors.New("request too large")
		}
		if !isPrefix {
			return out, nil
		}
	}
}

// Call sends one request to the daemon at socket path and decodes its result
// into out (which may be nil).
func Call(path, method string, params, out any) error {
	c, err := net.DialTimeout("unix", path, callTimeout)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return fmt.Errorf("%w: %s", ErrNotRunning, path)
		}
		return fmt.Errorf("connecting to %s: %w", path, err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(callTimeout))
	req := Request{Method: method}
	if params != nil {
		b, err := json.Marshal(params)
		if err != nil {
			return err
		}
		req.Params = b
	}
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return fmt.Errorf("sending request: %w", err)
	}
	var resp Response
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&resp); err != nil {
		return fmt.Errorf("reading response: %w", err)
	}
	if resp.Error != "" {
		return &RemoteError{Msg: resp.Error}
	}
	if out != nil && resp.Result != nil {
		return json.Unmarshal(resp.Result, out)
	}
	return nil
}

// RemoteError is an error the daemon reported.
type RemoteError struct{ Msg string }

func (e *RemoteError) Error() string { return e.Msg }
