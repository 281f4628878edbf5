//go:build dpfdebug

package main

// A build with tag dpfdebug (never shipped) helps find where a request's
// time and the daemon's memory go: with DPFD_TRACE=path it records an
// execution trace of the whole run into path.PID (`go tool trace`), and
// on SIGUSR1 it writes a heap profile into path.PID.heap (`go tool pprof`).
// DPFD_TRACE_OFF=1 records no trace and samples every allocation instead.

import (
	"fmt"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"syscall"
)

func init() {
	path := os.Getenv("DPFD_TRACE")
	if path == "" {
		return
	}
	if os.Getenv("DPFD_TRACE_OFF") != "" {
		runtime.MemProfileRate = 1 // exact heap profiles, at a cost
	}
	path = fmt.Sprintf("%s.%d", path, os.Getpid())
	f, err := os.Create(path)
	if err != nil {
		panic(err)
	}
	if os.Getenv("DPFD_TRACE_OFF") == "" {
		if err := trace.Start(f); err != nil {
			panic(err)
		}
	}
	stopTrace = func() { trace.Stop(); f.Close() }
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		for range usr1 {
			runtime.GC()
			if h, err := os.Create(path + ".heap"); err == nil {
				pprof.Lookup("heap").WriteTo(h, 0)
				h.Close()
			}
		}
	}()
}
