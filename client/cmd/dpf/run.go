package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"sync"

	"github.com/dpf-router/dpf/client"
	"github.com/dpf-router/dpf/client/internal/agent"
)

// preloadName is the LD_PRELOAD shim built from client/preload.
const preloadName = "libdpf-preload.so"

// findPreload returns the shim to use: the flag, $DPF_PRELOAD, next to the
// dpf binary, or in the library directories packages install it to.
func findPreload(flagVal string) string {
	if flagVal != "" {
		return flagVal
	}
	if p := os.Getenv("DPF_PRELOAD"); p != "" {
		return p
	}
	var cands []string
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		cands = append(cands, filepath.Join(dir, preloadName), filepath.Join(dir, "..", "lib", "dpf", preloadName))
	}
	cands = append(cands, "/usr/lib/dpf/"+preloadName, "/usr/local/lib/dpf/"+preloadName)
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			if abs, err := filepath.Abs(c); err == nil {
				return abs
			}
			return c
		}
	}
	return ""
}

func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpf run", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	preload := fs.String("preload", "", "the LD_PRELOAD shim (default: found next to dpf or in /usr/lib/dpf)")
	noPreload := fs.Bool("no-preload", false, "do not use the shim; find listening sockets through sock_diag only")
	quiet := fs.Bool("q", false, "do not print pinholes as they open and close")
	allowDiscovery := fs.Bool("allow-discovery-ports", false,
		"also map UDP ports of LAN discovery protocols (NetBIOS 137-138, SSDP 1900, WS-Discovery 3702, mDNS 5353, LLMNR 5355); "+
			"off by default: exposed to the internet they make UDP amplification reflectors")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	argv := fs.Args()
	if len(argv) == 0 {
		fmt.Fprintln(stderr, "usage: dpf run [options] -- PROGRAM ARGS...")
		return exitUsage
	}
	cfg, err := c.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dpf run:", err)
		return exitUsage
	}
	lib := ""
	if !*noPreload {
		lib = findPreload(*preload)
		if lib == "" {
			fmt.Fprintf(stderr, "dpf run: %s not found; only sockets visible through sock_diag get pinholes (a short delay after listen)\n", preloadName)
		}
	}
	if cfg.Description == "" {
		cfg.Description = "dpf run " + filepath.Base(argv[0])
	}
	// agent.Run forwards SIGINT, SIGTERM and SIGHUP to the program and
	// returns when it is gone; cancelling ctx would instead mean
	// "SIGTERM, then SIGKILL after a grace period".
	ctx := context.Background()

	cl, err := client.New(cfg)
	if err != nil {
		fmt.Fprintln(stderr, "dpf run:", err)
		return exitFailure
	}
	defer cl.Close()
	gctx, cancel := context.WithTimeout(ctx, gatewayWait)
	gw, _ := cl.Gateway(gctx)
	cancel()
	state := newStateWriter(gw.String(), "")
	defer state.close()
	m := &mapper{cl: cl, state: state, name: filepath.Base(argv[0])}

	acfg := agent.Config{
		Mapper:              m,
		PreloadLib:          lib,
		Logger:              cfg.Logger,
		AllowDiscoveryPorts: *allowDiscovery,
		OnChange: func(ev agent.Event) {
			if *quiet {
				return
			}
			switch {
			case ev.Err != nil:
				fmt.Fprintf(stderr, "dpf: %s port %d: no pinhole: %v\n", ev.Proto, ev.Port, ev.Err)
			case ev.Opened:
				fmt.Fprintf(stderr, "dpf: %s port %d is reachable at %s\n", ev.Proto, ev.Port, ev.External)
			default:
				fmt.Fprintf(stderr, "dpf: %s port %d closed; released %s\n", ev.Proto, ev.Port, ev.External)
			}
		},
	}
	code, err := agent.Run(ctx, acfg, argv)
	if err != nil {
		fmt.Fprintln(stderr, "dpf run:", err)
		if code == 0 {
			code = exitFailure
		}
	}
	return code
}

// mapper gives the agent pinholes from the client library and records them
// for `dpf status`.
type mapper struct {
	cl    *client.Client
	state *stateWriter
	name  string
}

func (m *mapper) Map(ctx context.Context, proto string, addr netip.Addr, port uint16) (agent.Pinhole, error) {
	req, err := mapRequest(proto, addr, port)
	if err != nil {
		return nil, err
	}
	mp, err := m.cl.Map(ctx, req)
	if err != nil {
		return nil, agentError(err)
	}
	ph := &pinhole{m: mp, w: m}
	ph.record()
	ph.wg.Add(1)
	go ph.watch()
	return ph, nil
}

// mapRequest is the client request for an agent.Mapper.Map call: addr,
// when set, is the IPv4 address the socket is bound to, which the gateway
// must forward to instead of the host's primary address.
func mapRequest(proto string, addr netip.Addr, port uint16) (client.MapRequest, error) {
	p, err := parseProto(proto)
	if err != nil {
		return client.MapRequest{}, err
	}
	req := client.MapRequest{Protocol: p, InternalPort: port}
	if addr = addr.Unmap(); addr.Is4() && !addr.IsUnspecified() {
		req.InternalAddr = addr
	}
	return req, nil
}

// agentError marks the client's "no gateway to talk to" errors as
// agent.ErrUnreachable, which the agent cannot test for itself (it does not
// import package client); the message stays the same. A *client.ResultError
// needs nothing: the agent finds its RetryAfter method.
func agentError(err error) error {
	if errors.Is(err, client.ErrGatewayUnreachable) || errors.Is(err, client.ErrNoGateway) {
		return unreachableError{err}
	}
	return err
}

// unreachableError is an error that also matches agent.ErrUnreachable.
type unreachableError struct{ error }

func (e unreachableError) Unwrap() error        { return e.error }
func (e unreachableError) Is(target error) bool { return target == agent.ErrUnreachable }

// pinhole adapts a client.Mapping to agent.Pinhole.
type pinhole struct {
	m  *client.Mapping
	w  *mapper
	wg sync.WaitGroup
}

func (p *pinhole) External() netip.AddrPort { return p.m.External() }

func (p *pinhole) Release(ctx context.Context) error {
	err := p.m.Release(ctx)
	p.wg.Wait()
	p.w.state.remove(p.m.Protocol().String(), p.m.Internal().String())
	return err
}

func (p *pinhole) record() {
	p.w.state.set(stateRecord{Proto: p.m.Protocol().String(), Internal: p.m.Internal().String(),
		External: p.m.External().String(), Expires: p.m.Expiry(), Command: "run " + p.w.name})
}

// watch keeps the state file current until the mapping's events end
// (Release closes the channel).
func (p *pinhole) watch() {
	defer p.wg.Done()
	for ev := range p.m.Events() {
		if ev.Kind == client.Released {
			return
		}
		p.record()
	}
}
