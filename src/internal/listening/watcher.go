package listening

import (
	"encoding/binary"
	"errors"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/clock"
	"github.com/dpf-router/dpf/src/firewall"
)

// Defaults for Config's zero values.
const (
	// DefaultDir is the socket tables of the calling process's network
	// namespace (/proc/net is a link to it).
	DefaultDir = "/proc/self/net"
	// DefaultMaxAge is how long a reading is reused. Allocating a port
	// may ask about thousands of ports; the router's services come and go
	// far more slowly than once a second.
	DefaultMaxAge = time.Second
)

// tables are the files Watcher reads and the protocol of each. The IPv6
// ones are missing when the kernel has no IPv6; that is not an error.
var tables = []struct {
	name  string
	proto firewall.Proto
	v6    bool
}{
	{"tcp", firewall.TCP, false},
	{"tcp6", firewall.TCP, true},
	{"udp", firewall.UDP, false},
	{"udp6", firewall.UDP, true},
}

// Config configures a Watcher. Zero values mean the documented defaults.
type Config struct {
	// Dir holds the tables tcp, tcp6, udp and udp6; default DefaultDir.
	Dir string
	// MaxAge is how long a reading is reused before the tables are read
	// again; default DefaultMaxAge.
	MaxAge time.Duration
	// Addrs returns the addresses, besides the wildcard ones (0.0.0.0 and
	// ::), whose sockets count: the WAN addresses. It is called once per
	// reading, with the Watcher's lock held, so it must be quick and must
	// not call the Watcher. nil means the wildcard addresses only.
	Addrs func() []netip.Addr
	// Clock decides when a reading is stale; nil means the real clock.
	Clock clock.Clock
	// Logger reports tables that cannot be read (once per failure, not
	// per reading); nil discards.
	Logger *slog.Logger
}

type portKey struct {
	proto firewall.Proto
	port  uint16
}

// Watcher answers which ports the host's own sockets serve, from readings of
// the socket tables at most MaxAge old. It reads lazily, when asked, so it
// needs no goroutine. Its methods are safe for concurrent use.
type Watcher struct {
	cfg Config
	clk clock.Clock
	log *slog.Logger

	// mu guards the cached reading. It is held while the tables are
	// read: they are small files in procfs, not network I/O, and a second
	// caller should wait for that reading rather than start another.
	mu    sync.Mutex
	read  time.Time            // when ports was read; zero: never
	ports map[portKey]struct{} // union of last
	last  [][]portKey          // per table, the last successful reading
	bad   map[string]struct{}  // tables whose last read failed (logged once)
}

// New returns a Watcher; it reads nothing until asked.
func New(cfg Config) *Watcher {
	if cfg.Dir == "" {
		cfg.Dir = DefaultDir
	}
	if cfg.MaxAge <= 0 {
		cfg.MaxAge = DefaultMaxAge
	}
	w := &Watcher{cfg: cfg, clk: cfg.Clock, log: cfg.Logger,
		last: make([][]portKey, len(tables)), bad: map[string]struct{}{}}
	if w.clk == nil {
		w.clk = clock.Real{}
	}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	return w
}

// Listening reports whether a socket of the host serves proto (TCP or UDP)
// port to the outside: a listening TCP socket, or an unconnected UDP
// socket, bound to a wildcard address or to one of Config.Addrs. Sockets
// bound to other addresses (loopback, the LAN) and connected sockets do
// not count. A table that cannot be read keeps its previous reading.
func (w *Watcher) Listening(proto firewall.Proto, port uint16) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	now := w.clk.Now()
	if w.read.IsZero() || now.Sub(w.read) >= w.cfg.MaxAge || now.Before(w.read) {
		w.refreshLocked()
		w.read = now
	}
	_, ok := w.ports[portKey{proto, port}]
	return ok
}

func (w *Watcher) refreshLocked() {
	var addrs []netip.Addr
	if w.cfg.Addrs != nil {
		addrs = w.cfg.Addrs()
	}
	for i, t := range tables {
		path := filepath.Join(w.cfg.Dir, t.name)
		b, err := os.ReadFile(path)
		if t.v6 && errors.Is(err, fs.ErrNotExist) {
			err, b = nil, nil // no IPv6 in this kernel
		}
		var es []Entry
		if err == nil {
			es, err = Parse(b, binary.NativeEndian)
		}
		if err != nil {
			if _, logged := w.bad[path]; !logged {
				w.log.Warn("reading the router's own sockets; keeping the previous reading", "file", path, "err", err)
				w.bad[path] = struct{}{}
			}
			continue
		}
		delete(w.bad, path)
		w.last[i] = serving(es, t.proto, addrs)
	}
	w.ports = make(map[portKey]struct{}, len(w.ports))
	for _, ks := range w.last {
		for _, k := range ks {
			w.ports[k] = struct{}{}
		}
	}
}

// serving returns the ports of the entries, from a table of proto, that
// serve the outside on a wildcard address or one of addrs.
func serving(es []Entry, proto firewall.Proto, addrs []netip.Addr) []portKey {
	var out []portKey
	for _, e := range es {
		if !e.Serves(proto) {
			continue
		}
		a := e.Local.Addr().Unmap()
		if !a.IsUnspecified() && !slices.Contains(addrs, a) {
			continue
		}
		out = append(out, portKey{proto, e.Local.Port()})
	}
	return out
}

// Serves reports whether e, read from a table of proto, accepts new traffic
// from any peer: a TCP socket in StateListen, or an unconnected UDP socket
// (StateClose with no remote port). Port 0 (not yet bound) never serves.
func (e Entry) Serves(proto firewall.Proto) bool {
	if e.Local.Port() == 0 {
		return false
	}
	switch proto {
	case firewall.TCP:
		return e.State == StateListen
	case firewall.UDP:
		return e.State == StateClose && e.Remote.Port() == 0
	}
	return false
}
