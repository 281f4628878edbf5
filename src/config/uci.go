package config

import (
	"bytes"
	"fmt"
	"io"
	"strings"
)

// File is a parsed UCI configuration file.
type File struct {
	// Name is the file name given to Parse, used in error messages.
	Name string
	// Sections are in file order. A named section that appears twice is
	// merged into the first, as libuci does.
	Sections []Section
}

// Section is one "config TYPE [NAME]" block.
type Section struct {
	Type    string   // section type, any printable ASCII except space
	Name    string   // section name, [A-Za-z0-9_]+; empty for an anonymous section
	Line    int      // line of the (first) config statement
	Options []Option // in order of first appearance
}

// Option is an option or list of a section.
//
// As in libuci, a later "option X" replaces an earlier X (keeping its place),
// and "list X" appends to X, turning an earlier "option X" into the first
// element of the list.
type Option struct {
	Name       string   // [A-Za-z0-9_]+
	Values     []string // exactly one for an option, one or more for a list
	IsList     bool     // set by "list", cleared by a later "option"
	Line       int      // line of the last statement that set or added a value
	ValueLines []int    // line of each value; same length as Values
}

// Lookup returns the section's option called name, or nil.
func (s *Section) Lookup(name string) *Option {
	for i := range s.Options {
		if s.Options[i].Name == name {
			return &s.Options[i]
		}
	}
	return nil
}

// Parse reads a UCI file as libuci does. filename is only used in errors and
// stored in File.Name.
//
// Syntax, one statement per line (or several separated by ';'):
//
//	package NAME          (accepted and ignored)
//	config TYPE [NAME]
//	option NAME VALUE
//	list NAME VALUE
//
// The keywords may be shortened to their first letter. Arguments are
// unquoted words, 'single quoted' text (no escapes), or "double quoted" text
// in which a backslash takes the next character literally; adjacent parts
// concatenate ('a'"b"c is abc). Outside single quotes a backslash at the end
// of a line joins the next line. Quoted text may span lines. A '#' outside
// quotes starts a comment that runs to the end of the line, even in the
// middle of a word (a#b is a). Section and option names are [A-Za-z0-9_]+.
//
// Differences from libuci, all stricter: anything after the last argument is
// an error (libuci ignores it outside strict mode), an option without a value
// is an error (libuci deletes the option), and NUL bytes are an error.
//
// Errors about the content are *Error; read errors are returned as they are.
func Parse(r io.Reader, filename string) (*File, error) {
	src, err := io.ReadAll(r)
	if err != nil {
		return nil, fmt.Errorf("config: reading %s: %w", filename, err)
	}
	p := &parser{src: src, line: 1, f: &File{Name: filename}, cur: -1, named: map[string]int{}}
	if i := bytes.IndexByte(src, 0); i >= 0 {
		return nil, p.errf(1+bytes.Count(src[:i], []byte{'\n'}), "", "NUL byte in file")
	}
	if err := p.parse(); err != nil {
		return nil, err
	}
	return p.f, nil
}

type parser struct {
	src   []byte
	pos   int
	line  int
	f     *File
	cur   int            // index of the current section, -1 before the first
	named map[string]int // section name -> index
}

// arg is one argument of a statement.
type arg struct {
	val  string
	line int
}

func (p *parser) errf(line int, option, format string, a ...any) *Error {
	return &Error{File: p.f.Name, Line: line, Option: option, Msg: fmt.Sprintf(format, a...)}
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}

func (p *parser) parse() error {
	for {
		p.skipBlank()
		if p.pos >= len(p.src) {
			return nil
		}
		switch p.src[p.pos] {
		case '\n':
			p.pos++
			p.line++
			continue
		case '#':
			p.skipComment()
			continue
		case ';':
			p.pos++
			continue
		}
		line := p.line
		start := p.pos
		for p.pos < len(p.src) && !isSpace(p.src[p.pos]) {
			p.pos++
		}
		kw := string(p.src[start:p.pos])
		args, err := p.args()
		if err != nil {
			return err
		}
		switch kw {
		case "package", "p":
			err = p.doPackage(line, args)
		case "config", "c":
			err = p.doConfig(line, args)
		case "option", "o":
			err = p.doOption(line, args, false)
		case "list", "l":
			err = p.doOption(line, args, true)
		default:
			if len(kw) > maxQuotedKeyword {
				// Likely a value on a line of its own, perhaps a
				// key: not repeated (auth.go).
				err = p.errf(line, "", "unknown keyword of %d characters (expected config, option, list or package; a value on a line of its own?)", len(kw))
				break
			}
			err = p.errf(line, "", "unknown keyword %q (expected config, option, list or package)", kw)
		}
		if err != nil {
			return err
		}
	}
}

// skipBlank skips white space other than newlines.
func (p *parser) skipBlank() {
	for p.pos < len(p.src) && p.src[p.pos] != '\n' && isSpace(p.src[p.pos]) {
		p.pos++
	}
}

// skipComment skips to the newline ending the line, leaving it unread.
func (p *parser) skipComment() {
	if i := bytes.IndexByte(p.src[p.pos:], '\n'); i >= 0 {
		p.pos += i
	} else {
		p.pos = len(p.src)
	}
}

// args reads the arguments of the current statement, up to the end of the
// line, a comment or a ';' (which is consumed).
func (p *parser) args() ([]arg, error) {
	var out []arg
	for {
		p.skipBlank()
		if p.pos >= len(p.src) {
			return out, nil
		}
		switch p.src[p.pos] {
		case '\n':
			return out, nil
		case '#':
			p.skipComment()
			return out, nil
		case ';':
			p.pos++
			return out, nil
		}
		a, present, err := p.word()
		if err != nil {
			return nil, err
		}
		if present {
			out = append(out, a)
		}
	}
}

// word reads one argument. present is false when it held nothing but line
// continuations.
func (p *parser) word() (a arg, present bool, err error) {
	a.line = p.line
	var b strings.Builder
	for p.pos < len(p.src) {
		c := p.src[p.pos]
		switch {
		case isSpace(c), c == '#', c == ';':
			a.val = b.String()
			return a, present, nil
		case c == '\'':
			open := p.line
			end := bytes.IndexByte(p.src[p.pos+1:], '\'')
			if end < 0 {
				return a, false, p.errf(open, "", "unterminated ' quote")
			}
			text := p.src[p.pos+1 : p.pos+1+end]
			b.Write(text)
			p.line += bytes.Count(text, []byte{'\n'})
			p.pos += end + 2
			present = true
		case c == '"':
			if err := p.doubleQuoted(&b); err != nil {
				return a, false, err
			}
			present = true
		case c == '\\':
			if p.backslash(&b) {
				present = true
			}
		default:
			b.WriteByte(c)
			p.pos++
			present = true
		}
	}
	a.val = b.String()
	return a, present, nil
}

// doubleQuoted reads "..." starting at the opening quote.
func (p *parser) doubleQuoted(b *strings.Builder) error {
	open := p.line
	p.pos++
	for p.pos < len(p.src) {
		switch c := p.src[p.pos]; c {
		case '"':
			p.pos++
			return nil
		case '\\':
			p.backslash(b)
		case '\n':
			p.line++
			fallthrough
		default:
			b.WriteByte(c)
			p.pos++
		}
	}
	return p.errf(open, "", `unterminated " quote`)
}

// backslash handles a backslash at p.pos: before a line end it joins the next
// line and adds nothing; otherwise it adds the next byte literally. It
// reports whether it added a byte.
func (p *parser) backslash(b *strings.Builder) bool {
	p.pos++
	rest := p.src[p.pos:]
	switch {
	case len(rest) == 0:
		return false
	case rest[0] == '\n':
		p.pos++
		p.line++
		return false
	case len(rest) >= 2 && rest[0] == '\r' && rest[1] == '\n':
		p.pos += 2
		p.line++
		return false
	}
	b.WriteByte(rest[0])
	p.pos++
	return true
}

// validName reports whether s is a valid section or option name.
func validName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// validType reports whether s is a valid section type: printable ASCII
// without space, as libuci allows.
func validType(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < 33 || s[i] > 126 {
			return false
		}
	}
	return true
}

// validPackage reports whether s is a valid package name ([A-Za-z0-9_-]+).
func validPackage(s string) bool {
	return s != "" && validName(strings.ReplaceAll(s, "-", "_"))
}

func (p *parser) extra(args []arg, n int, what string) error {
	if len(args) > n {
		return p.errf(args[n].line, "", "unexpected %q after %s", args[n].val, what)
	}
	return nil
}

func (p *parser) doPackage(line int, args []arg) error {
	if len(args) == 0 {
		return p.errf(line, "", "package without a name")
	}
	if !validPackage(args[0].val) {
		return p.errf(line, "", "invalid package name %q", args[0].val)
	}
	return p.extra(args, 1, "package name")
}

func (p *parser) doConfig(line int, args []arg) error {
	if len(args) == 0 || args[0].val == "" {
		return p.errf(line, "", "config without a section type")
	}
	typ := args[0].val
	if !validType(typ) {
		return p.errf(args[0].line, "", "invalid section type %q", typ)
	}
	name := ""
	if len(args) > 1 {
		name = args[1].val // '' means anonymous, as in libuci
		if name != "" && !validName(name) {
			return p.errf(args[1].line, "", "invalid section name %q (use letters, digits and _)", name)
		}
	}
	if err := p.extra(args, 2, "section name"); err != nil {
		return err
	}
	if name != "" {
		if i, ok := p.named[name]; ok {
			if prev := p.f.Sections[i]; prev.Type != typ {
				return p.errf(line, "", "section %q of type %q was declared with type %q at line %d", name, typ, prev.Type, prev.Line)
			}
			p.cur = i
			return nil
		}
		p.named[name] = len(p.f.Sections)
	}
	p.f.Sections = append(p.f.Sections, Section{Type: typ, Name: name, Line: line})
	p.cur = len(p.f.Sections) - 1
	return nil
}

func (p *parser) doOption(line int, args []arg, list bool) error {
	kw := "option"
	if list {
		kw = "list"
	}
	if len(args) == 0 || args[0].val == "" {
		return p.errf(line, "", "%s without a name", kw)
	}
	name := args[0].val
	if !validName(name) {
		return p.errf(args[0].line, "", "invalid %s name %q (use letters, digits and _)", kw, name)
	}
	if p.cur < 0 {
		return p.errf(line, name, "%s before the first config line", kw)
	}
	if len(args) < 2 {
		return p.errf(line, name, "missing value (write '' for an empty one)")
	}
	if err := p.extra(args, 2, "value (quote values that contain spaces)"); err != nil {
		err.(*Error).Option = name
		if isSecretOption(name) {
			// The word may be half of a key (auth.go).
			err.(*Error).Msg = "unexpected word after value (quote values that contain spaces)"
		}
		return err
	}
	val, vline := args[1].val, args[1].line
	s := &p.f.Sections[p.cur]
	o := s.Lookup(name)
	switch {
	case o == nil:
		s.Options = append(s.Options, Option{Name: name, Values: []string{val}, IsList: list, Line: line, ValueLines: []int{vline}})
	case list:
		o.Values = append(o.Values, val)
		o.ValueLines = append(o.ValueLines, vline)
		o.IsList = true
		o.Line = line
	default:
		*o = Option{Name: name, Values: []string{val}, Line: line, ValueLines: []int{vline}}
	}
	return nil
}
