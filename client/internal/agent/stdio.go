package agent

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"time"
)

// stdio connects the program's standard streams. An *os.File is passed to
// the program as it is; any other reader or writer gets a pipe and a
// copying goroutine of ours. exec.Cmd would copy too, but its Wait waits for
// the copies, which last as long as any descendant holds the pipe; Run
// waits for the program on its own terms instead.
type stdio struct {
	childEnds []*os.File // closed in the parent once the child has them
	readEnds  []*os.File // ours, of output pipes; closed by finish
	stdinW    *os.File   // ours, of the input pipe
	copies    sync.WaitGroup
	copyOut   []func()
	copyIn    func()
}

func setupStdio(cmd *exec.Cmd, cfg Config) (*stdio, error) {
	s := &stdio{}
	switch in := cfg.Stdin.(type) {
	case nil:
		cmd.Stdin = os.Stdin
	case *os.File:
		cmd.Stdin = in
	default:
		r, w, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("agent: stdin pipe: %w", err)
		}
		cmd.Stdin = r
		s.childEnds = append(s.childEnds, r)
		s.stdinW = w
		s.copyIn = func() {
			io.Copy(w, in)
			w.Close()
		}
	}
	out := func(w io.Writer, def *os.File) (*os.File, error) {
		switch w := w.(type) {
		case nil:
			return def, nil
		case *os.File:
			return w, nil
		}
		r, pw, err := os.Pipe()
		if err != nil {
			return nil, fmt.Errorf("agent: output pipe: %w", err)
		}
		s.childEnds = append(s.childEnds, pw)
		s.readEnds = append(s.readEnds, r)
		s.copyOut = append(s.copyOut, func() { io.Copy(w, r) })
		return pw, nil
	}
	var err error
	if cmd.Stdout, err = out(cfg.Stdout, os.Stdout); err != nil {
		s.abort()
		return nil, err
	}
	if cmd.Stderr, err = out(cfg.Stderr, os.Stderr); err != nil {
		s.abort()
		return nil, err
	}
	return s, nil
}

// started closes the child's ends in the parent and starts copying.
func (s *stdio) started() {
	for _, f := range s.childEnds {
		f.Close()
	}
	for _, c := range s.copyOut {
		s.copies.Go(c)
	}
	if s.copyIn != nil {
		// Not waited for: a Read of an arbitrary io.Reader cannot be
		// interrupted (exec.Cmd has the same limit). Its writes fail once
		// finish closes the pipe.
		go s.copyIn()
	}
}

// abort closes everything when the program did not start.
func (s *stdio) abort() {
	for _, f := range s.childEnds {
		f.Close()
	}
	for _, f := range s.readEnds {
		f.Close()
	}
	if s.stdinW != nil {
		s.stdinW.Close()
	}
}

// finish lets the output copies run for up to drain (descendants left
// running may hold the pipes open), then closes our ends and waits for them.
func (s *stdio) finish(drain time.Duration) {
	done := make(chan struct{})
	go func() {
		s.copies.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(drain):
	}
	for _, f := range s.readEnds {
		f.Close()
	}
	if s.stdinW != nil {
		s.stdinW.Close()
	}
	<-done
}
