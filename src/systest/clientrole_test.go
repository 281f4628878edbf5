package systest

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/dpf-router/dpf/client"
)

// The client library runs in a LAN host's namespace as a whole process:
// the library opens new sockets from its own goroutines (renewals,
// re-creation), and only a process that lives in the namespace puts them
// there. The test binary re-executes itself with DPF_SYSTEST_ROLE set.
//
// Role "listen" (DPF_ROLE_NET tcp or udp, DPF_ROLE_ADDR): client.Listen or
// ListenPacket, then an echo server; it prints "PUBLIC addr:port", one
// "EVENT kind external" line per mapping event, and on the stdin line
// "close" closes the listener and prints "CLOSED".

const roleEnv = "DPF_SYSTEST_ROLE"

// runRole runs the role named by DPF_SYSTEST_ROLE and returns the exit code.
func runRole(role string) int {
	switch role {
	case "listen":
		if err := roleListen(os.Getenv("DPF_ROLE_NET"), os.Getenv("DPF_ROLE_ADDR")); err != nil {
			fmt.Println("ERROR", err)
			return 1
		}
		return 0
	}
	fmt.Println("ERROR unknown role", role)
	return 2
}

func roleListen(network, addr string) error {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	cfg := client.Config{Logger: log, Description: "systest " + network, MaxJitter: 200 * time.Millisecond}
	if f := os.Getenv("DPF_ROLE_FORCE"); f != "" {
		cfg.Force = f
	}
	cl, err := client.New(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var (
		m     *client.Mapping
		close func() error
	)
	if strings.HasPrefix(network, "tcp") {
		l, err := client.Listen(ctx, network, addr, client.WithClient(cl))
		if err != nil {
			return err
		}
		m, close = l.Mapping(), l.Close
		go echoStream(l)
		fmt.Println("PUBLIC", l.PublicAddr())
	} else {
		pc, err := client.ListenPacket(ctx, network, addr, client.WithClient(cl))
		if err != nil {
			return err
		}
		m, close = pc.Mapping(), pc.Close
		go echoPackets(pc)
		fmt.Println("PUBLIC", pc.PublicAddr())
	}
	if proto, err := cl.Protocol(ctx); err == nil {
		fmt.Println("PROTO", proto)
	}
	go func() {
		for ev := range m.Events() {
			fmt.Println("EVENT", ev.Kind, ev.External)
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		if sc.Text() == "close" {
			err := close()
			fmt.Println("CLOSED", err)
		}
	}
	return nil
}

// roleProc is a role process started in a namespace.
type roleProc struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	log   *syncBuffer
}

// startRole starts the test binary in namespace ns with role and env.
func (r *router) startRole(ns, role string, env ...string) *roleProc {
	r.t.Helper()
	exe, err := os.Executable()
	if err != nil {
		r.t.Fatal(err)
	}
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(append(os.Environ(), roleEnv+"="+role), env...)
	p := &roleProc{cmd: cmd, lines: make(chan string, 100), log: &syncBuffer{}}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	p.stdin, err = cmd.StdinPipe()
	if err != nil {
		r.t.Fatal(err)
	}
	cmd.Stderr = p.log
	if err := r.lab.Start(ns, cmd); err != nil {
		r.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			select {
			case p.lines <- sc.Text():
			default:
			}
		}
		close(p.lines)
	}()
	r.t.Cleanup(func() {
		p.stdin.Close()
		if r.t.Failed() {
			r.t.Logf("client log:\n%s", p.log.String())
		}
	})
	return p
}

// expect waits (bounded) for a line starting with prefix and returns the
// rest; an ERROR line or the end of output fails the test.
func (p *roleProc) expect(r *router, prefix string, within time.Duration) string {
	r.t.Helper()
	timer := time.NewTimer(within)
	defer timer.Stop()
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				r.t.Fatalf("client exited while waiting for %q\n%s", prefix, p.log.String())
			}
			if strings.HasPrefix(line, "ERROR") {
				r.t.Fatalf("client: %s\n%s", line, p.log.String())
			}
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				return strings.TrimSpace(rest)
			}
		case <-timer.C:
			r.t.Fatalf("no %q from the client within %v\n%s", prefix, within, p.log.String())
		}
	}
}
