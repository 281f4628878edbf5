// Command goserver is a test server for package agent: built with
// CGO_ENABLED=0 it is a static binary that never loads the preload shim.
// It listens on TCP 23001 and UDP 23002 (below the ephemeral port range) on
// all addresses, prints "READY <pid>" and runs until killed (2 minutes at
// most).
package main

import (
	"fmt"
	"net"
	"os"
	"time"
)

func main() {
	ln, err := net.Listen("tcp4", "0.0.0.0:23001")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	pc, err := net.ListenPacket("udp4", "0.0.0.0:23002")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println("READY", os.Getpid())
	time.Sleep(2 * time.Minute)
	ln.Close()
	pc.Close()
}
