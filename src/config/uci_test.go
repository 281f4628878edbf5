package config

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// sec and opt build expected Files; lines are checked separately.
func sec(typ, name string, opts ...Option) Section {
	return Section{Type: typ, Name: name, Options: opts}
}

func opt(name string, vals ...string) Option { return Option{Name: name, Values: vals} }

func lst(name string, vals ...string) Option { return Option{Name: name, Values: vals, IsList: true} }

// stripLines returns a copy of f without line numbers, for comparisons.
func stripLines(f *File) *File {
	out := &File{Name: f.Name}
	for _, s := range f.Sections {
		s2 := Section{Type: s.Type, Name: s.Name}
		for _, o := range s.Options {
			s2.Options = append(s2.Options, Option{Name: o.Name, Values: append([]string(nil), o.Values...), IsList: o.IsList})
		}
		out.Sections = append(out.Sections, s2)
	}
	return out
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Section
	}{
		{"empty", "", nil},
		{"comments and blanks", "# c\n\n   # indented\n\t\n", nil},
		{"brief example", "# comment\nconfig dpf 'main'\n\toption enabled '1'\n\tlist lan_interface 'br-lan'\n\toption wan_interface \"wan\"\nconfig rule\n\toption action allow\n",
			[]Section{sec("dpf", "main", opt("enabled", "1"), lst("lan_interface", "br-lan"), opt("wan_interface", "wan")), sec("rule", "", opt("action", "allow"))}},
		{"package ignored", "package dpf\nconfig a\n", []Section{sec("a", "")}},
		{"concatenation", `config a
	option x 'a'"b"c
	option y a'b c'd
	option z ''""
`, []Section{sec("a", "", opt("x", "abc"), opt("y", "ab cd"), opt("z", ""))}},
		{"double quote escapes", `config a
	option x "q\"b\\s\n\$"
	option y "it's # not a comment"
`, []Section{sec("a", "", opt("x", `q"b\sn$`), opt("y", "it's # not a comment"))}},
		{"single quote no escapes", `config a
	option x 'back\slash "dq"'
`, []Section{sec("a", "", opt("x", `back\slash "dq"`))}},
		{"escaped quote outside quotes", `config a
	option x 'it'\''s'
	option y a\ b
`, []Section{sec("a", "", opt("x", "it's"), opt("y", "a b"))}},
		{"trailing comments", "config a # c\n\toption x y # c\n\toption z 'w'#c\n\toption v a#b c\n",
			[]Section{sec("a", "", opt("x", "y"), opt("z", "w"), opt("v", "a"))}},
		{"lists", "config a\n\tlist l 1\n\tlist l '2'\n\tlist l \"3 4\"\n",
			[]Section{sec("a", "", lst("l", "1", "2", "3 4"))}},
		{"option replaces in place", "config a\n\toption x 1\n\toption y 2\n\toption x 3\n",
			[]Section{sec("a", "", opt("x", "3"), opt("y", "2"))}},
		{"list after option extends it", "config a\n\toption x 1\n\tlist x 2\n",
			[]Section{sec("a", "", lst("x", "1", "2"))}},
		{"option after list replaces it", "config a\n\tlist x 1\n\tlist x 2\n\toption x 3\n",
			[]Section{sec("a", "", opt("x", "3"))}},
		{"named section merges", "config a 'n'\n\toption x 1\nconfig b\nconfig a n\n\toption y 2\n",
			[]Section{sec("a", "n", opt("x", "1"), opt("y", "2")), sec("b", "")}},
		{"empty name is anonymous", "config a ''\n", []Section{sec("a", "")}},
		{"quoted names", "config 'a' \"n\"\n\toption 'x' 1\n", []Section{sec("a", "n", opt("x", "1"))}},
		{"type with punctuation", "config foo-bar.baz\n", []Section{sec("foo-bar.baz", "")}},
		{"semicolons", "config a; option x 1; list y 2;option z 3\n", []Section{sec("a", "", opt("x", "1"), lst("y", "2"), opt("z", "3"))}},
		{"short keywords", "c a\n\to x 1\n\tl y 2\n", []Section{sec("a", "", opt("x", "1"), lst("y", "2"))}},
		{"crlf", "config a\r\n\toption x 'y'\r\n\toption z w\r\n", []Section{sec("a", "", opt("x", "y"), opt("z", "w"))}},
		{"multi-line quotes", "config a\n\toption x 'l1\nl2'\n\toption y \"l3\nl4\"\n", []Section{sec("a", "", opt("x", "l1\nl2"), opt("y", "l3\nl4"))}},
		{"line continuation", "config a\n\toption x ab\\\ncd\n", []Section{sec("a", "", opt("x", "abcd"))}},
		{"continuation between arguments", "config a\n\toption x \\\n\tvalue\n", []Section{sec("a", "", opt("x", "value"))}},
		{"no final newline", "config a\n\toption x y", []Section{sec("a", "", opt("x", "y"))}},
		{"unicode value", "config a\n\toption x 'grüße ✓'\n", []Section{sec("a", "", opt("x", "grüße ✓"))}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, err := Parse(strings.NewReader(tt.in), "test.conf")
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := &File{Name: "test.conf", Sections: tt.want}
			if got := stripLines(f); !reflect.DeepEqual(got, want) {
				t.Fatalf("Parse =\n%#v\nwant\n%#v", got, want)
			}
		})
	}
}

func TestParseLines(t *testing.T) {
	in := "# 1\nconfig a 'n'\n\toption x 'multi\nline'\n\tlist l one\n\n\tlist l two\nconfig b\n\toption y z\n"
	f, err := Parse(strings.NewReader(in), "f")
	if err != nil {
		t.Fatal(err)
	}
	a, b := f.Sections[0], f.Sections[1]
	if a.Line != 2 || b.Line != 8 {
		t.Errorf("section lines = %d, %d; want 2, 8", a.Line, b.Line)
	}
	if x := a.Lookup("x"); x.Line != 3 || !reflect.DeepEqual(x.ValueLines, []int{3}) {
		t.Errorf("x = %+v", x)
	}
	if l := a.Lookup("l"); l.Line != 7 || !reflect.DeepEqual(l.ValueLines, []int{5, 7}) {
		t.Errorf("l = %+v", l)
	}
	if y := b.Lookup("y"); y.Line != 9 {
		t.Errorf("y.Line = %d, want 9", y.Line)
	}
	if a.Lookup("nope") != nil {
		t.Error("Lookup of a missing option")
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // full Error() text
	}{
		{"option outside section", "# c\noption x y\n", "f.conf:2: option x: option before the first config line"},
		{"list outside section", "list x y\n", "f.conf:1: option x: list before the first config line"},
		{"unterminated single", "config a\n\toption x 'abc\n\n", "f.conf:2: unterminated ' quote"},
		{"unterminated double", "config a\n\toption x \"abc\\\"\n", `f.conf:2: unterminated " quote`},
		{"bad option name", "config a\n\toption my-opt 1\n", `f.conf:2: invalid option name "my-opt" (use letters, digits and _)`},
		{"bad section name", "config a 'b.c'\n", `f.conf:1: invalid section name "b.c" (use letters, digits and _)`},
		{"bad type", "config 'a b'\n", `f.conf:1: invalid section type "a b"`},
		{"missing type", "config\n", "f.conf:1: config without a section type"},
		{"junk after value", "config a\n\toption x y z\n", `f.conf:2: option x: unexpected "z" after value (quote values that contain spaces)`},
		{"junk after quoted value", "config a\n\toption x 'y' 'z'\n", `f.conf:2: option x: unexpected "z" after value (quote values that contain spaces)`},
		{"junk after section name", "config a b c\n", `f.conf:1: unexpected "c" after section name`},
		{"missing value", "config a\n\toption x\n", "f.conf:2: option x: missing value (write '' for an empty one)"},
		{"missing option name", "config a\n\toption\n", "f.conf:2: option without a name"},
		{"unknown keyword", "config a\n\toptoin x y\n", `f.conf:2: unknown keyword "optoin" (expected config, option, list or package)`},
		{"quoted keyword", "'config' a\n", `f.conf:1: unknown keyword "'config'" (expected config, option, list or package)`},
		{"type clash", "config a n\nconfig b n\n", `f.conf:2: section "n" of type "b" was declared with type "a" at line 1`},
		{"NUL byte", "config a\n\toption x 'a\x00'\n", "f.conf:2: NUL byte in file"},
		{"package without name", "package\n", "f.conf:1: package without a name"},
		{"error after multi-line value", "config a\n\toption x 'l1\nl2'\n\toption b-d 1\n", `f.conf:4: invalid option name "b-d" (use letters, digits and _)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(strings.NewReader(tt.in), "f.conf")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error = %v (%T), want *Error", err, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("Parse error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}

func TestErrorString(t *testing.T) {
	tests := []struct {
		e    Error
		want string
	}{
		{Error{File: "/etc/config/dpf", Line: 7, Option: "max_lifetime", Msg: `"abc" is not a number of seconds`}, `/etc/config/dpf:7: option max_lifetime: "abc" is not a number of seconds`},
		{Error{File: "f", Line: 3, Msg: "m"}, "f:3: m"},
		{Error{File: "f", Msg: "m"}, "f: m"},
		{Error{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.e.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

type failReader struct{}

func (failReader) Read([]byte) (int, error) { return 0, errors.New("disk on fire") }

func TestParseReadError(t *testing.T) {
	_, err := Parse(failReader{}, "f")
	var e *Error
	if err == nil || errors.As(err, &e) || !strings.Contains(err.Error(), "disk on fire") {
		t.Fatalf("Parse = %v", err)
	}
}

func TestWriteTo(t *testing.T) {
	f := &File{Name: "w", Sections: []Section{
		sec("dpf", "main", opt("enabled", "1"), lst("lan_interface", "br-lan", "eth1"), opt("q", "it's \"x\" # y\nz"), opt("e", "")),
		sec("odd'type", ""),
	}}
	var b strings.Builder
	n, err := f.WriteTo(&b)
	if err != nil {
		t.Fatal(err)
	}
	want := "config dpf 'main'\n\toption enabled '1'\n\tlist lan_interface 'br-lan'\n\tlist lan_interface 'eth1'\n" +
		"\toption q 'it'\\''s \"x\" # y\nz'\n\toption e ''\n\nconfig 'odd'\\''type'\n"
	if b.String() != want || n != int64(len(want)) {
		t.Fatalf("WriteTo = %d,\n%s\nwant\n%s", n, b.String(), want)
	}
	back, err := Parse(strings.NewReader(b.String()), "w")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(stripLines(back), stripLines(f)) {
		t.Fatalf("round trip:\n%#v\nwant\n%#v", back, f)
	}

	bad := []*File{
		{Sections: []Section{sec("", "")}},
		{Sections: []Section{sec("a", "b-c")}},
		{Sections: []Section{sec("a", "n"), sec("a", "n")}},
		{Sections: []Section{sec("a", "", opt("x-y", "1"))}},
		{Sections: []Section{sec("a", "", opt("x", "1", "2"))}},
		{Sections: []Section{sec("a", "", lst("x"))}},
		{Sections: []Section{sec("a", "", opt("x", "1"), opt("x", "2"))}},
		{Sections: []Section{sec("a", "", opt("x", "\x00"))}},
	}
	for i, f := range bad {
		var b strings.Builder
		if _, err := f.WriteTo(&b); !errors.Is(err, ErrUnwritable) || b.Len() != 0 {
			t.Errorf("bad file %d: WriteTo = %v, wrote %q", i, err, b.String())
		}
	}
}
