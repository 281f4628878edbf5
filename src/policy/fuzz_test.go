package policy

import (
	"errors"
	"testing"
)

// FuzzParseWords checks the parsers of the rule options' words
// (ParsePortRange, ParseRuleProto, ParseAction): they never panic, their errors
// wrap the package's sentinels, and what they accept prints (String) as
// text they parse back to the same value. The committed corpus is in
// testdata/fuzz/FuzzParseWords.
func FuzzParseWords(f *testing.F) {
	for _, s := range []string{"any", "80", " 1024-65535 ", "0", "65536", "2-1", "+5", "0x50", "1_000",
		"tcp", "UDP", "tcp udp", "both", "allow", "Deny", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if r, err := ParsePortRange(s); err != nil {
			if !errors.Is(err, ErrInvalidPortRange) {
				t.Fatalf("ParsePortRange(%q) error %v does not wrap ErrInvalidPortRange", s, err)
			}
		} else if again, err := ParsePortRange(r.String()); err != nil || again != r || !r.Valid() {
			t.Fatalf("ParsePortRange(%q) = %v; String %q parses to %v, %v", s, r, r.String(), again, err)
		}
		if p, err := ParseRuleProto(s); err != nil {
			if !errors.Is(err, ErrInvalidProto) {
				t.Fatalf("ParseRuleProto(%q) error %v does not wrap ErrInvalidProto", s, err)
			}
		} else if again, err := ParseRuleProto(p.String()); err != nil || again != p {
			t.Fatalf("ParseRuleProto(%q) = %v; String parses to %v, %v", s, p, again, err)
		}
		if a, err := ParseAction(s); err != nil {
			if !errors.Is(err, ErrInvalidAction) {
				t.Fatalf("ParseAction(%q) error %v does not wrap ErrInvalidAction", s, err)
			}
		} else if again, err := ParseAction(a.String()); err != nil || again != a {
			t.Fatalf("ParseAction(%q) = %v; String parses to %v, %v", s, a, again, err)
		}
	})
}
