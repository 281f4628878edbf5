package agent

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"time"
)

// Mapper opens pinholes on the router. The dpf client library provides the
// real one; agenttest.Mapper is a fake.
type Mapper interface {
	// Map opens a pinhole for proto ("tcp" or "udp") and the local port;
	// it returns when the pinhole is granted or has failed. addr is the
	// zero Addr for a socket bound to a wildcard address (the router
	// forwards to the host's address toward it), otherwise the IPv4
	// address the socket is bound to, which the router must forward to.
	// Map must return soon after ctx is done. A granted Pinhole stays
	// open (the Mapper renews it as needed) until Release.
	//
	// An error that says the router could not be reached should wrap
	// ErrUnreachable (context.DeadlineExceeded and net.Error timeouts
	// count too); one that carries the router's requested wait should
	// have a method RetryAfter() time.Duration.
	Map(ctx context.Context, proto string, addr netip.Addr, port uint16) (Pinhole, error)
}

// ErrUnreachable is what Mapper errors wrap when the router could not be
// reached. After such an error Run stops making the program wait for
// pinholes for a while (see Config.MapTimeout).
var ErrUnreachable = errors.New("router unreachable")

// Pinhole is a granted mapping.
type Pinhole interface {
	// External is the address and port the internet reaches the socket on.
	External() netip.AddrPort
	// Release closes the pinhole. Run calls it exactly once per Pinhole.
	Release(ctx context.Context) error
}

// Environment variables Run sets for the program; the preload shim reads
// them.
const (
	// EnvAgentSock is the path of the agent's unix socket.
	EnvAgentSock = "DPF_AGENT_SOCK"
	// EnvMapTimeout is how many milliseconds the shim waits for an answer.
	EnvMapTimeout = "DPF_MAP_TIMEOUT_MS"
)

// Defaults for Config's zero values.
const (
	DefaultPollInterval = 250 * time.Millisecond
	DefaultMapTimeout   = 5 * time.Second
	DefaultKillGrace    = 5 * time.Second
)

// Config configures Run. Zero values mean the documented defaults.
type Config struct {
	// Mapper opens the pinholes. Required.
	Mapper Mapper

	// PreloadLib is the path of the preload shim (libdpf-preload.so),
	// prepended to LD_PRELOAD. "" means no shim: sockets are only found by
	// polling the kernel, so listen() and bind() return before the pinhole
	// is open and UDP sockets on ephemeral ports are not mapped.
	PreloadLib string

	// PollInterval is how often the kernel's socket list is read.
	// Default DefaultPollInterval.
	PollInterval time.Duration

	// MapTimeout bounds how long a listen() or bind() in the shim waits for
	// its pinhole; after it the call returns and Run keeps trying in the
	// background. Default DefaultMapTimeout.
	//
	// While the router is unreachable (a Map failed with ErrUnreachable
	// or a timeout in the last 30 s, and none has succeeded since), the
	// shim waits at most 250 ms instead, so a program that opens many
	// sockets does not start MapTimeout slower for each of them.
	MapTimeout time.Duration

	// AllowDiscoveryPorts maps the UDP ports of LAN discovery protocols
	// (NetBIOS 137 and 138, SSDP 1900, WS-Discovery 3702, mDNS 5353,
	// LLMNR 5355) like any other. By default they are never mapped: their
	// small queries get large answers, so exposed to the internet they
	// make the host an amplification reflector.
	AllowDiscoveryPorts bool

	// KillGrace is how long Run waits after SIGTERM, when ctx is cancelled,
	// before it sends SIGKILL. Default DefaultKillGrace.
	KillGrace time.Duration

	// Logger receives the agent's log; nil discards it.
	Logger *slog.Logger

	// Stdin, Stdout and Stderr are the program's; nil means os.Stdin,
	// os.Stdout, os.Stderr. An *os.File is handed to the program as it is;
	// anything else goes through a pipe that Run copies.
	Stdin          io.Reader
	Stdout, Stderr io.Writer

	// Env is the program's environment; nil means os.Environ(). Run adds
	// EnvAgentSock, EnvMapTimeout and LD_PRELOAD to it.
	Env []string

	// OnChange, if not nil, is called after every pinhole opened, released
	// or failed, one call at a time, from Run's goroutines. It must not
	// block for long.
	OnChange func(Event)
}

// Event reports a change of a pinhole.
type Event struct {
	// Opened is true for an attempt to open (then Err says whether it
	// failed) and false for a release (Err: the release failed).
	Opened   bool
	Proto    string     // "tcp" or "udp"
	Addr     netip.Addr // the local IPv4 address; zero for a wildcard bind
	Port     uint16     // the local port
	External netip.AddrPort
	Err      error
}
