package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"time"

	"github.com/dpf-router/dpf/client"
	"github.com/dpf-router/dpf/client/nattype"
)

// defaultSTUN is a public STUN server; --stun points elsewhere. It tells
// the public address (enough to check the gateway's external address and
// spot carrier-grade or double NAT), but it does not support RFC 5780, so
// mapping and filtering behaviour need --stun with a server that does (two
// addresses, such as coturn); the output says so.
const defaultSTUN = "stun.l.google.com:19302"

func cmdNATType(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpf nat-type", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var c common
	c.register(fs)
	stun := fs.String("stun", defaultSTUN, "RFC 5780 STUN server HOST:PORT")
	asJSON := fs.Bool("json", false, "print JSON")
	timeout := fs.Duration("timeout", 15*time.Second, "overall time limit")
	if err := fs.Parse(args); err != nil || fs.NArg() != 0 {
		return exitUsage
	}
	cfg, err := c.config(stderr)
	if err != nil {
		fmt.Fprintln(stderr, "dpf nat-type:", err)
		return exitUsage
	}
	cfg.DisableAnnounce = true
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	gw := gatewayInfo(ctx, cfg)
	res, err := nattype.Probe(ctx, nattype.Config{Server: *stun, Logger: cfg.Logger})
	if err != nil {
		fmt.Fprintln(stderr, "dpf nat-type:", err)
		return exitFailure
	}
	v := nattype.Classify(res, gw)
	if *asJSON {
		return printJSON(stdout, map[string]any{
			"local": res.Local.String(), "mapped": res.Mapped.String(),
			"mapping": res.Mapping.String(), "filtering": res.Filtering.String(),
			"mapping_reason": res.MappingReason, "filtering_reason": res.FilteringReason,
			"no_nat": res.NoNAT, "gateway_protocol": gw.Protocol,
			"gateway_external_address": addrString(gw.ExternalAddr),
			"verdict":                  v.Code, "text": v.Text,
			"cgnat": v.CGNAT, "double_nat": v.DoubleNAT, "inbound_via_dpf": v.InboundViaDPF,
		}, nil)
	}
	fmt.Fprintf(stdout, "local address:    %s\n", res.Local)
	fmt.Fprintf(stdout, "mapped address:   %s (seen by %s)\n", res.Mapped, *stun)
	fmt.Fprintf(stdout, "mapping:          %s%s\n", res.Mapping, reason(res.MappingReason))
	fmt.Fprintf(stdout, "filtering:        %s%s\n", res.Filtering, reason(res.FilteringReason))
	if gw.Protocol != "" {
		fmt.Fprintf(stdout, "gateway:          %s, external address %s\n", gw.Protocol, addrString(gw.ExternalAddr))
	} else {
		fmt.Fprintln(stdout, "gateway:          no PCP or NAT-PMP server answered")
	}
	fmt.Fprintf(stdout, "verdict:          %s\n", v.Text)
	return exitOK
}

// gatewayInfo asks the gateway (bounded) which protocol it speaks and its
// external address; a gateway that does not answer gives the zero value.
func gatewayInfo(ctx context.Context, cfg client.Config) nattype.GatewayInfo {
	ctx, cancel := context.WithTimeout(ctx, gatewayWait)
	defer cancel()
	cl, err := client.New(cfg)
	if err != nil {
		return nattype.GatewayInfo{}
	}
	defer cl.Close()
	p, err := cl.Protocol(ctx)
	if err != nil {
		return nattype.GatewayInfo{}
	}
	ext, _ := cl.ExternalAddr(ctx)
	return nattype.GatewayInfo{Protocol: p, ExternalAddr: ext}
}

// gatewayWait bounds the gateway query: a router without PCP/NAT-PMP never
// answers, and the probe should not wait on it for long.
const gatewayWait = 4 * time.Second

func addrString(a interface {
	IsValid() bool
	String() string
}) string {
	if !a.IsValid() {
		return "-"
	}
	return a.String()
}

// reason formats why a behaviour could not be determined.
func reason(r string) string {
	if r == "" {
		return ""
	}
	return " (" + r + ")"
}
