// Command dpf-demo shows DPF end to end in network namespaces: an internet
// host, a router running dpfd and a LAN host. A server on the LAN host gets
// a pinhole from a real NAT-PMP client (Debian's natpmpc), the internet host
// connects through it, the pinhole is released and the connection fails
// again. Then an unmodified program (python3's http.server) runs under
// `dpf run`, which opens a pinhole when the program listens and closes it
// when the program exits. Every step is printed. It needs root; `make demo`
// runs it.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
)

func main() {
	dpfd := flag.String("dpfd", "bin/dpfd", "path of the dpfd binary")
	dpf := flag.String("dpf", "bin/dpf", "path of the dpf binary (its LD_PRELOAD shim beside it); empty to skip that part")
	backend := flag.String("backend", "auto", "firewall backend: auto, nftables or iptables")
	flag.Parse()
	if err := demo(*dpfd, *dpf, *backend); err != nil {
		fmt.Fprintln(os.Stderr, "demo failed:", err)
		os.Exit(1)
	}
	fmt.Println("\ndemo finished: all steps behaved as expected")
}

var step int

func say(format string, args ...any) {
	step++
	fmt.Printf("\n[%d] %s\n", step, fmt.Sprintf(format, args...))
}

func show(text string) {
	for _, line := range strings.Split(strings.TrimRight(text, "\n"), "\n") {
		fmt.Println("    " + line)
	}
}

func demo(dpfdPath, dpfPath, backend string) error {
	if os.Geteuid() != 0 {
		return errors.New("needs root (network namespaces and netfilter)")
	}
	dpfdPath, err := filepath.Abs(dpfdPath)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dpfdPath); err != nil {
		return fmt.Errorf("dpfd binary: %w (run make build)", err)
	}

	say("building the network: internet host %s, router (WAN %s, LAN %s), LAN host %s",
		lab.Inet, lab.RouterWAN, lab.RouterLAN, lab.LANHost(0))
	l, err := lab.New(fmt.Sprintf("dpfdemo%d", os.Getpid()%100000), 1)
	if err != nil {
		return err
	}
	defer func() {
		say("cleaning up: stopping dpfd, removing its rules and the namespaces")
		l.Close()
	}()

	dir, err := os.MkdirTemp("", "dpf-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	cfgPath := filepath.Join(dir, "dpf")
	sock := filepath.Join(dir, "dpfd.sock")
	cfg := fmt.Sprintf(`config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend '%s'
	option db '%s'
	option socket '%s'

# The shipped default rule: LAN hosts may map ports 1024-65535.
config rule 'lan_high_ports'
	option action 'allow'
	option int_addr 'lan'
	option int_ports '1024-65535'
	option ext_ports '1024-65535'
`, backend, filepath.Join(dir, "leases.db"), sock)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		return err
	}
	say("starting dpfd in the router namespace with this configuration:")
	show(cfg)
	logf, err := os.Create(filepath.Join(dir, "dpfd.log"))
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command(dpfdPath, "run", "-c", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := l.Start(l.Router, cmd); err != nil {
		return err
	}
	defer func() {
		lab.Stop(cmd, syscall.SIGTERM)
		l.Exec(l.Router, dpfdPath, "cleanup", "-c", cfgPath)
	}()
	var st control.Status
	for i := 0; ; i++ {
		if err = control.Call(sock, control.MethodStatus, nil, &st); err == nil && len(st.Listening) > 0 {
			break
		}
		if i > 150 {
			b, _ := os.ReadFile(logf.Name())
			return fmt.Errorf("dpfd did not start: %v\n%s", err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
	fmt.Printf("    dpfd is up: backend %s, external address %s, listening on %s\n",
		st.Backend, st.ExternalAddress, strings.Join(st.Listening, " "))

	say("the LAN host starts a TCP server on port 8080")
	var ln net.Listener
	if err := lab.In(l.LAN[0], func() (err error) { ln, err = net.Listen("tcp4", ":8080"); return err }); err != nil {
		return err
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			fmt.Fprintf(c, "hello from the LAN server, %s\n", c.RemoteAddr())
			c.Close()
		}
	}()

	target := netip.AddrPortFrom(lab.RouterWAN, 8080)
	say("the internet host connects to %s: no pinhole yet, so this must fail", target)
	if msg, err := connect(l, target); err == nil {
		return fmt.Errorf("connected without a pinhole: %q", msg)
	} else {
		fmt.Println("    failed as expected:", err)
	}

	say("the LAN host asks the router for a pinhole: natpmpc -g %s -a 8080 8080 tcp 3600", lab.RouterLAN)
	out, err := l.Output(30*time.Second, l.LAN[0], "natpmpc", "-g", lab.RouterLAN.String(), "-a", "8080", "8080", "tcp", "3600")
	show(out)
	if err != nil || !strings.Contains(out, "Mapped public port 8080") {
		return fmt.Errorf("natpmpc did not get the mapping: %v", err)
	}

	say("dpfd's lease table (dpfd list):")
	out, err = l.Output(10*time.Second, l.Router, dpfdPath, "list", "-c", cfgPath)
	show(out)
	if err != nil {
		return err
	}

	say("the internet host connects to %s again", target)
	msg, err := connect(l, target)
	if err != nil {
		return fmt.Errorf("no connection through the pinhole: %w", err)
	}
	fmt.Printf("    connected; the server says: %s", msg)

	say("the LAN host releases the pinhole: natpmpc -a 8080 8080 tcp 0")
	out, err = l.Output(30*time.Second, l.LAN[0], "natpmpc", "-g", lab.RouterLAN.String(), "-a", "8080", "8080", "tcp", "0")
	show(out)
	if err != nil {
		return err
	}

	say("the internet host tries once more: the pinhole is closed, so this must fail")
	if msg, err := connect(l, target); err == nil {
		return fmt.Errorf("still connected after release: %q", msg)
	} else {
		fmt.Println("    failed as expected:", err)
	}

	if dpfPath != "" {
		if err := legacy(l, dpfPath, dir); err != nil {
			return err
		}
	}

	say("dpfd's log:")
	b, _ := os.ReadFile(logf.Name())
	show(string(b))
	return nil
}

// legacy runs an unmodified server under `dpf run` on the LAN host.
func legacy(l *lab.Lab, dpfPath, dir string) error {
	dpfPath, err := filepath.Abs(dpfPath)
	if err != nil {
		return err
	}
	if _, err := os.Stat(dpfPath); err != nil {
		return fmt.Errorf("dpf binary: %w (run make build)", err)
	}
	python, err := exec.LookPath("python3")
	if err != nil {
		return fmt.Errorf("python3: %w (make deps installs it)", err)
	}
	target := netip.AddrPortFrom(lab.RouterWAN, 8081)
	say("a program that knows nothing of DPF, run under dpf on the LAN host:\n    dpf run -- python3 -m http.server 8081")
	www := filepath.Join(dir, "www")
	if err := os.MkdirAll(www, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(www, "index.html"), []byte("hello from an unmodified python3 http.server\n"), 0o644); err != nil {
		return err
	}
	out := &lineBuffer{}
	cmd := exec.Command(dpfPath, "run", "--", python, "-m", "http.server", "--bind", "0.0.0.0", "8081")
	cmd.Dir = www
	cmd.Env = append(os.Environ(), "DPF_STATE_DIR="+filepath.Join(dir, "dpf-state"))
	cmd.Stdout, cmd.Stderr = out, out
	if err := l.Start(l.LAN[0], cmd); err != nil {
		return err
	}
	defer lab.Stop(cmd, syscall.SIGTERM)
	line, err := out.wait("is reachable at", 30*time.Second)
	if err != nil {
		return err
	}
	fmt.Println("    dpf says:", line)

	say("the internet host fetches http://%s/ through the pinhole", target)
	status, err := httpGet(l, target)
	if err != nil {
		return fmt.Errorf("no connection through the pinhole: %w", err)
	}
	fmt.Println("    the server answers:", status)

	say("the program stops (SIGTERM to dpf run, which passes it on); its pinhole is released")
	if err := lab.Stop(cmd, syscall.SIGTERM); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return err
		}
	}
	if line, err := out.wait("closed; released", 5*time.Second); err == nil {
		fmt.Println("    dpf says:", line)
	} else {
		return err
	}
	say("the internet host tries once more: this must fail")
	if status, err := httpGet(l, target); err == nil {
		return fmt.Errorf("still reachable after the program stopped: %q", status)
	} else {
		fmt.Println("    failed as expected:", err)
	}
	return nil
}

// httpGet fetches / from target in the internet namespace and returns the
// status line and body (a raw request, so that the socket is made in the
// namespace rather than in a transport goroutine).
func httpGet(l *lab.Lab, target netip.AddrPort) (string, error) {
	var resp string
	err := lab.In(l.Inet, func() error {
		c, err := net.DialTimeout("tcp4", target.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(3 * time.Second))
		if _, err := fmt.Fprintf(c, "GET / HTTP/1.0\r\nHost: %s\r\n\r\n", target); err != nil {
			return err
		}
		b, err := io.ReadAll(io.LimitReader(c, 1<<16))
		if err != nil {
			return err
		}
		head, body, _ := strings.Cut(string(b), "\r\n\r\n")
		status, _, _ := strings.Cut(head, "\r\n")
		if !strings.Contains(status, " 200 ") {
			return fmt.Errorf("unexpected answer %q", status)
		}
		resp = status + "; " + strings.TrimSpace(body)
		return nil
	})
	return resp, err
}

// lineBuffer collects a process's output and lets the demo wait for a line.
type lineBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (w *lineBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

// wait returns the first line containing s, waiting at most within.
func (w *lineBuffer) wait(s string, within time.Duration) (string, error) {
	deadline := time.Now().Add(within)
	for {
		w.mu.Lock()
		text := w.b.String()
		w.mu.Unlock()
		for _, line := range strings.Split(text, "\n") {
			if strings.Contains(line, s) {
				return strings.TrimSpace(line), nil
			}
		}
		if time.Now().After(deadline) {
			return "", fmt.Errorf("no %q within %v; output so far:\n%s", s, within, text)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func connect(l *lab.Lab, target netip.AddrPort) (string, error) {
	var msg string
	err := lab.In(l.Inet, func() error {
		c, err := net.DialTimeout("tcp4", target.String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(2 * time.Second))
		msg, err = bufio.NewReader(c).ReadString('\n')
		if err == io.EOF && msg != "" {
			err = nil
		}
		return err
	})
	return msg, err
}
