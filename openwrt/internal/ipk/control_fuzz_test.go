package ipk

import (
	"strings"
	"testing"
)

// FuzzParseControl checks that ParseControl never panics and that every
// field it returns has a name a control file can hold (no white space, no
// colon, not empty). The committed corpus is in
// testdata/fuzz/FuzzParseControl.
func FuzzParseControl(f *testing.F) {
	f.Add("Package: dpf\nVersion: 1.0-1\nDescription: one\n two\n")
	f.Add(" leading continuation\nA: b\n")
	f.Add("A: b\nA: c\n")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		fields, err := ParseControl(s)
		if err != nil {
			return
		}
		for name := range fields {
			if name == "" || strings.ContainsAny(name, " \t:\n") {
				t.Fatalf("field name %q from %q", name, s)
			}
		}
	})
}
