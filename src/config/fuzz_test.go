package config

import (
	"bytes"
	"errors"
	"os"
	"reflect"
	"testing"
)

// FuzzParse checks that Parse never panics, that its errors are *Error with
// a line inside the input, and that a File it returns survives WriteTo and a
// second Parse unchanged (line numbers aside), with WriteTo then stable.
// The committed corpus is in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	if raw, err := os.ReadFile(shippedConfig); err == nil {
		f.Add(raw)
	}
	for _, s := range []string{
		"", "config a\n", minimal,
		"config a 'n'\n\toption x 'a'\"b\"c\n\tlist l 1\n\tlist l '2 3'\n",
		"config a\n\toption x \"q\\\"\\\\\"\n\toption y 'it'\\''s'\n",
		"config a; option x 1 # c\n\tlist x 2\n\toption x 'multi\nline'\n",
		"c a\n\to x a\\\nb\n\tl y \\\n z\r\n",
		"config 'odd'\\''type' ''\n\toption e ''\n",
		"config a\n\toption x 'open\n", "option x y\n", "config a b c\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Parse(bytes.NewReader(data), "fuzz")
		if err != nil {
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Parse error %v is %T, not *Error", err, err)
			}
			if e.Line < 1 || e.Line > 1+bytes.Count(data, []byte{'\n'}) {
				t.Fatalf("error line %d outside the input: %v", e.Line, err)
			}
			return
		}
		var out bytes.Buffer
		n, err := file.WriteTo(&out)
		if err != nil {
			t.Fatalf("WriteTo of a parsed file: %v", err)
		}
		if n != int64(out.Len()) {
			t.Fatalf("WriteTo returned %d, wrote %d bytes", n, out.Len())
		}
		again, err := Parse(bytes.NewReader(out.Bytes()), "fuzz")
		if err != nil {
			t.Fatalf("re-parse: %v\ninput %q\nwritten %q", err, data, out.Bytes())
		}
		if !reflect.DeepEqual(stripLines(again), stripLines(file)) {
			t.Fatalf("round trip differs\ninput %q\nwritten %q\nfirst %#v\nagain %#v", data, out.Bytes(), file, again)
		}
		var out2 bytes.Buffer
		if _, err := again.WriteTo(&out2); err != nil || !bytes.Equal(out.Bytes(), out2.Bytes()) {
			t.Fatalf("WriteTo not stable: %v\n%q\n%q", err, out.Bytes(), out2.Bytes())
		}
		// FromFile must not panic either; its result does not matter here.
		_, _ = FromFile(file)
	})
}
