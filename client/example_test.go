package client

import (
	"context"
	"errors"
	"fmt"
)

// The examples run against a fake gateway on the loopback interface, which
// stands in for the router; real code leaves Config.Gateway zero.

func ExampleListen() {
	gw, err := startFakeGW()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gw.Close()

	ln, err := Listen(context.Background(), "tcp4", "0.0.0.0:0",
		WithConfig(Config{Gateway: gw.addr, DisableAnnounce: true}),
		WithExternalPort(8080))
	if err != nil {
		fmt.Println(err)
		return
	}
	defer ln.Close()
	// ln.Addr() is the local address, as for net.Listen; this is the
	// address peers on the Internet use.
	fmt.Println("reachable at", ln.PublicAddr())
	// Output: reachable at 203.0.113.7:8080
}

func ExampleClient_Map() {
	gw, err := startFakeGW()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gw.Close()

	c, err := New(Config{Gateway: gw.addr, DisableAnnounce: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	m, err := c.Map(context.Background(), MapRequest{Protocol: UDP, InternalPort: 5060, Description: "sip"})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(m.Protocol(), m.External())

	c.Close() // releases m
	for ev := range m.Events() {
		fmt.Println(ev.Kind, ev.External)
	}
	// Output:
	// udp 203.0.113.7:5060
	// released 203.0.113.7:5060
}

func ExampleResultError() {
	gw, err := startFakeGW()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer gw.Close()
	gw.set(func(g *fakeGW) { g.refusePCP, g.refuseLife = 2, 1800 }) // NOT_AUTHORIZED

	c, err := New(Config{Gateway: gw.addr, DisableAnnounce: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Close()
	_, err = c.Map(context.Background(), MapRequest{Protocol: TCP, InternalPort: 22})
	fmt.Println(err)
	fmt.Println(errors.Is(err, ErrNotAuthorized))
	// Output:
	// client: map tcp port 22: PCP MAP: NOT_AUTHORIZED (result 2, retry after 1800 s)
	// true
}
