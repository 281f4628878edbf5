// Command staticserver is a statically linked Go echo server for the `dpf
// run` system test: Go programs make system calls directly, so the
// LD_PRELOAD shim never sees them and dpf must find the sockets through
// sock_diag. It echoes on TCP and UDP on the port given as its argument.
package main

import (
	"io"
	"net"
	"os"
	"time"
)

func main() {
	addr := "0.0.0.0:" + os.Args[1]
	ln, err := net.Listen("tcp4", addr)
	if err != nil {
		panic(err)
	}
	pc, err := net.ListenPacket("udp4", addr)
	if err != nil {
		panic(err)
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	os.Stdout.WriteString("listening\n")
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			io.Copy(c, c)
		}()
	}
}
