// Command dpf is DPF's client: it holds pinholes on the router for servers
// on this host.
//
//	dpf expose tcp|udp PORT       hold a pinhole while it runs
//	dpf run -- PROGRAM ARGS...    give every socket PROGRAM listens on a pinhole
//	dpf nat-type [--stun HOST:PORT]
//	dpf status [--json]
//	dpf version
//
// With --key-file FILE (before the command or among its options) or
// $DPF_KEY_FILE, every request is authenticated with the key in FILE (see
// dpfd genkey and option auth of dpfd); FILE must be private to its owner.
//
// Exit codes: 0 success, 1 failure, 2 usage error; dpf run exits with the
// program's own status.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/dpf-router/dpf/client"
)

// Version (git describe) and PackageVersion (the version of the OpenWrt
// package dpf is built for: make openwrt, make ipk, openwrt/dpf/Makefile;
// empty in make build) are set at build time (-ldflags -X).
var (
	Version        = "dev"
	PackageVersion string
)

const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

const usage = `usage: dpf COMMAND [options]

commands:
  expose [options] tcp|udp PORT    open a pinhole for PORT on this host and hold
                                   it until Ctrl-C or SIGTERM
  run [options] -- PROGRAM ARGS... run PROGRAM; every socket it listens on gets a
                                   pinhole for as long as the socket exists
  nat-type [--stun HOST:PORT]      what kind of NAT this host is behind, and
                                   whether inbound connections can work
  status [--json]                  gateway, protocol, external address and this
                                   host's mappings
  version                          print the version

common options:
  --gateway ADDR[:PORT]   the PCP/NAT-PMP server (default: the default route's
                          gateway, port 5351)
  --protocol pcp|natpmp   do not probe: speak only this protocol
  --lifetime DURATION     requested lifetime (default 2h; renewed automatically)
  --description TEXT      PCP DESCRIPTION shown on the router
  --key-file FILE         authenticate requests with the key in FILE (from
                          dpfd genkey; mode 0600); also before COMMAND, or
                          $DPF_KEY_FILE. PCP only: no NAT-PMP, no fallback
  -v                      log what happens (to stderr)
`

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// common holds the options every command takes.
type common struct {
	gateway     string
	protocol    string
	lifetime    time.Duration
	description string
	keyFile     string
	verbose     bool
}

func (c *common) register(fs *flag.FlagSet) {
	fs.StringVar(&c.gateway, "gateway", "", "PCP/NAT-PMP server ADDR[:PORT]")
	fs.StringVar(&c.protocol, "protocol", "", "pcp or natpmp (default: PCP, falling back to NAT-PMP)")
	fs.DurationVar(&c.lifetime, "lifetime", 0, "requested mapping lifetime")
	fs.StringVar(&c.description, "description", "", "description shown on the router (PCP)")
	fs.StringVar(&c.keyFile, "key-file", "", "authenticate requests with the key in this file (default $"+keyFileEnv+")")
	fs.BoolVar(&c.verbose, "v", false, "verbose logging")
}

func (c *common) config(stderr io.Writer) (client.Config, error) {
	cfg := client.Config{Lifetime: c.lifetime, Description: c.description}
	switch c.protocol {
	case "", "pcp", "natpmp":
		cfg.Force = c.protocol
	default:
		return cfg, fmt.Errorf("--protocol %q: want pcp or natpmp", c.protocol)
	}
	if c.gateway != "" {
		gw, err := parseGateway(c.gateway)
		if err != nil {
			return cfg, err
		}
		cfg.Gateway = gw
	}
	keyFile := c.keyFile
	if keyFile == "" {
		keyFile = os.Getenv(keyFileEnv)
	}
	if keyFile != "" {
		if c.protocol == "natpmp" {
			return cfg, errors.New("--protocol natpmp cannot be used with a key: NAT-PMP cannot authenticate requests")
		}
		key, err := loadKeyFile(keyFile)
		if err != nil {
			return cfg, err
		}
		cfg.Key = key
	}
	level := slog.LevelWarn
	if c.verbose {
		level = slog.LevelDebug
	}
	cfg.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	return cfg, nil
}

// parseGateway accepts ADDR or ADDR:PORT (IPv4).
func parseGateway(s string) (netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("--gateway %q: want an IPv4 address, optionally with :PORT", s)
	}
	return netip.AddrPortFrom(a, 5351), nil
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	keyFile, args, err := globalKeyFile(args)
	if err != nil || len(args) == 0 {
		if err != nil {
			fmt.Fprintln(stderr, "dpf:", err)
		}
		fmt.Fprint(stderr, usage)
		return exitUsage
	}
	cmd, args := args[0], args[1:]
	if keyFile != "" {
		// The command's own --key-file, parsed later, wins.
		args = append([]string{"--key-file=" + keyFile}, args...)
	}
	switch cmd {
	case "expose":
		return cmdExpose(args, stdout, stderr)
	case "run":
		return cmdRun(args, stdout, stderr)
	case "nat-type":
		return cmdNATType(args, stdout, stderr)
	case "status":
		return cmdStatus(args, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, versionLine())
		return exitOK
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return exitOK
	}
	fmt.Fprintf(stderr, "dpf: unknown command %q\n\n%s", cmd, usage)
	return exitUsage
}

// versionLine is what "dpf version" and --version print: the package
// version first, where openwrt/packages' CI looks for it, then git describe.
func versionLine() string {
	if PackageVersion == "" || PackageVersion == Version {
		return "dpf " + Version
	}
	return "dpf " + PackageVersion + " (" + Version + ")"
}

// parseProto parses "tcp" or "udp".
func parseProto(s string) (client.Protocol, error) {
	switch strings.ToLower(s) {
	case "tcp":
		return client.TCP, nil
	case "udp":
		return client.UDP, nil
	}
	return 0, fmt.Errorf("protocol %q: want tcp or udp", s)
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port %q: want 1-65535", s)
	}
	return uint16(n), nil
}

// signalContext is cancelled by SIGINT or SIGTERM.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
}

// releaseTimeout bounds the release of mappings when dpf exits: if the
// gateway does not answer by then, the lease lapses on its own.
const releaseTimeout = 3 * time.Second

func cmdExpose(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpf expose", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	extPort := fs.Uint("external-port", 0, "suggested external port (default: the same as PORT)")
	wait := fs.Duration("timeout", client.ListenTimeout, "how long to wait for the gateway to grant the pinhole")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: dpf expose [options] tcp|udp PORT")
		return exitUsage
	}
	proto, err := parseProto(fs.Arg(0))
	if err == nil {
		_, err = parsePort(fs.Arg(1))
	}
	if err == nil && *extPort > 65535 {
		err = fmt.Errorf("--external-port %d: want 1-65535", *extPort)
	}
	if err != nil {
		fmt.Fprintln(stderr, "dpf expose:", err)
		return exitUsage
	}
	port, _ := parsePort(fs.Arg(1))
	cfg, err := c.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dpf expose:", err)
		return exitUsage
	}
	if cfg.Description == "" {
		cfg.Description = "dpf expose"
	}
	ctx, stop := signalContext()
	defer stop()

	cl, err := client.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "dpf expose:", err)
		return exitFailure
	}
	defer cl.Close()
	// PCP retransmits for as long as it is allowed to; a gateway that
	// never answers must not leave the user staring at nothing.
	mctx, cancel := context.WithTimeout(ctx, *wait)
	gw, err := cl.Gateway(mctx)
	if err == nil {
		fmt.Fprintf(stderr, "asking %s for %s port %d...\n", gw, proto, port)
		var m *client.Mapping
		m, err = cl.Map(mctx, client.MapRequest{Protocol: proto, InternalPort: port, SuggestedExternalPort: uint16(*extPort)})
		if err == nil {
			cancel()
			return holdMapping(ctx, cl, m, gw, stdout, stderr)
		}
	}
	cancel()
	switch {
	case ctx.Err() != nil:
		fmt.Fprintln(stderr, "dpf expose: interrupted before the gateway answered")
	case errors.Is(mctx.Err(), context.DeadlineExceeded):
		fmt.Fprintf(stderr, "dpf expose: no answer from the gateway within %v: %v\n", *wait, err)
	default:
		fmt.Fprintln(stderr, "dpf expose:", err)
	}
	return exitFailure
}

// holdMapping keeps m until ctx ends (a signal), then releases it.
func holdMapping(ctx context.Context, cl *client.Client, m *client.Mapping, gw netip.AddrPort, stdout, stderr io.Writer) int {
	proto := m.Protocol()
	pname, _ := cl.Protocol(ctx)
	state := newStateWriter(gw.String(), pname)
	defer state.close()
	record := func() {
		state.set(stateRecord{Proto: proto.String(), Internal: m.Internal().String(), External: m.External().String(), Expires: m.Expiry(), Command: "expose"})
	}
	record()
	fmt.Fprintf(stdout, "%s %s is reachable at %s (via %s at %s; Ctrl-C to close)\n", proto, m.Internal(), m.External(), pname, gw)

	for {
		select {
		case <-ctx.Done():
			ext := m.External() // Release clears it
			rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
			err := m.Release(rctx)
			cancel()
			if err != nil {
				fmt.Fprintf(stderr, "dpf expose: releasing %s: %v (the router drops it when its lease ends)\n", ext, err)
				return exitFailure
			}
			fmt.Fprintf(stdout, "released %s\n", ext)
			return exitOK
		case ev, ok := <-m.Events():
			if !ok {
				return exitOK
			}
			printEvent(stdout, stderr, ev)
			record()
		}
	}
}

// printEvent reports what changed; routine renewals only with -v (they
// are logged by the client).
func printEvent(stdout, stderr io.Writer, ev client.Event) {
	switch ev.Kind {
	case client.Changed:
		fmt.Fprintf(stdout, "now reachable at %s\n", ev.External)
	case client.Restored:
		fmt.Fprintf(stdout, "restored: reachable at %s\n", ev.External)
	case client.Lost:
		fmt.Fprintf(stderr, "pinhole lost (%v); trying to get it back\n", ev.Err)
	}
}

func cmdStatus(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpf status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 5*time.Second, "how long to wait for the gateway")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	cfg, err := c.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dpf status:", err)
		return exitUsage
	}
	cfg.DisableAnnounce = true
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	st, err := gatherStatus(ctx, cfg)
	if *asJSON {
		return printJSON(stdout, st, err)
	}
	printStatus(stdout, st)
	if err != nil {
		fmt.Fprintln(stderr, "dpf status:", err)
		return exitFailure
	}
	return exitOK
}

// status is what `dpf status` reports.
type status struct {
	Gateway      string        `json:"gateway"`
	Protocol     string        `json:"protocol"`
	ExternalAddr string        `json:"external_address"`
	Error        string        `json:"error,omitempty"`
	Mappings     []stateRecord `json:"mappings"`
}

func gatherStatus(ctx context.Context, cfg client.Config) (status, error) {
	var st status
	states, serr := readStates()
	for _, s := range states {
		st.Mappings = append(st.Mappings, s.Mappings...)
	}
	cl, err := client.New(cfg)
	if err != nil {
		st.Error = err.Error()
		return st, errors.Join(err, serr)
	}
	defer cl.Close()
	if gw, err := cl.Gateway(ctx); err == nil {
		st.Gateway = gw.String()
	} else {
		st.Error = err.Error()
		return st, errors.Join(err, serr)
	}
	p, err := cl.Protocol(ctx)
	if err != nil {
		st.Error = err.Error()
		return st, errors.Join(err, serr)
	}
	st.Protocol = p
	ext, err := cl.ExternalAddr(ctx)
	if err != nil {
		st.Error = err.Error()
		return st, errors.Join(err, serr)
	}
	st.ExternalAddr = ext.String()
	return st, serr
}
