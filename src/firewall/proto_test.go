package firewall

import "testing"

// TestParseProto: a pinhole's protocol is tcp or udp in any case; "any",
// which a policy rule may say, and everything else is refused with the
// text named.
func TestParseProto(t *testing.T) {
	for in, want := range map[string]Proto{"tcp": TCP, "TCP": TCP, "Udp": UDP, "udp": UDP} {
		if got, err := ParseProto(in); err != nil || got != want {
			t.Errorf("ParseProto(%q) = %v, %v; want %v", in, got, err, want)
		}
		if got, err := ParseProto(want.String()); err != nil || got != want {
			t.Errorf("ParseProto(%q) = %v, %v: String does not parse back", want.String(), got, err)
		}
	}
	for _, in := range []string{"", "any", "sctp", "tcp ", "6"} {
		if got, err := ParseProto(in); err == nil {
			t.Errorf("ParseProto(%q) = %v, want an error", in, got)
		} else if want := `protocol "` + in + `": want tcp or udp`; err.Error() != want {
			t.Errorf("ParseProto(%q) error %q, want %q", in, err, want)
		}
	}
}
