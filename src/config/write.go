package config

import (
	"bufio"
	"fmt"
	"io"
	"strings"
)

// WriteTo writes f as UCI text that [Parse] reads back to an equal File
// (apart from line numbers): names as they are, the section name and every
// value in single quotes. A single quote inside a value closes the quoted
// text, is written escaped (\') and reopens it, as libuci's export does. Comments and the package line are not kept.
//
// It checks f first and writes nothing for a File that cannot be written
// faithfully, returning an error wrapping [ErrUnwritable].
func (f *File) WriteTo(w io.Writer) (int64, error) {
	if err := f.checkWritable(); err != nil {
		return 0, err
	}
	cw := &countWriter{w: w}
	bw := bufio.NewWriter(cw)
	for i, s := range f.Sections {
		if i > 0 {
			bw.WriteString("\n")
		}
		bw.WriteString("config ")
		bw.WriteString(quoteType(s.Type))
		if s.Name != "" {
			bw.WriteString(" " + quote(s.Name))
		}
		bw.WriteString("\n")
		for _, o := range s.Options {
			kw := "\toption "
			if o.IsList {
				kw = "\tlist "
			}
			for _, v := range o.Values {
				bw.WriteString(kw + o.Name + " " + quote(v) + "\n")
			}
		}
	}
	err := bw.Flush()
	return cw.n, err
}

func (f *File) checkWritable() error {
	named := map[string]bool{}
	for _, s := range f.Sections {
		if !validType(s.Type) {
			return fmt.Errorf("%w: invalid section type %q", ErrUnwritable, s.Type)
		}
		if s.Name != "" {
			if !validName(s.Name) {
				return fmt.Errorf("%w: invalid section name %q", ErrUnwritable, s.Name)
			}
			if named[s.Name] {
				return fmt.Errorf("%w: two sections named %q", ErrUnwritable, s.Name)
			}
			named[s.Name] = true
		}
		seen := map[string]bool{}
		for _, o := range s.Options {
			if !validName(o.Name) {
				return fmt.Errorf("%w: invalid option name %q", ErrUnwritable, o.Name)
			}
			if seen[o.Name] {
				return fmt.Errorf("%w: option %q twice in one section", ErrUnwritable, o.Name)
			}
			seen[o.Name] = true
			if o.IsList && len(o.Values) == 0 || !o.IsList && len(o.Values) != 1 {
				return fmt.Errorf("%w: option %q has %d values", ErrUnwritable, o.Name, len(o.Values))
			}
			for _, v := range o.Values {
				if strings.IndexByte(v, 0) >= 0 {
					return fmt.Errorf("%w: option %q: value holds a NUL byte", ErrUnwritable, o.Name)
				}
			}
		}
	}
	return nil
}

// quote single-quotes s; each quote in s closes the text, is written as \'
// and reopens it.
func quote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// quoteType leaves plain types bare, as uci export does, and quotes others.
func quoteType(s string) string {
	if validPackage(s) {
		return s
	}
	return quote(s)
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
