package ipk

import (
	"os/exec"
	"testing"
)

func TestVersionFromDescribe(t *testing.T) {
	tests := []struct {
		describe string
		commits  int
		want     string
	}{
		{"v1.2.3", 0, "1.2.3-1"},
		{"1.2.3", 0, "1.2.3-1"},
		{"v1.2.3-dirty", 0, "1.2.3+dirty-1"},
		{"v1.2.3-rc1", 0, "1.2.3~rc1-1"},
		{"v1.2.3-5-g4a69640", 0, "1.2.3+git5.4a69640-1"},
		{"v1.2.3-rc1-5-g4a69640-dirty", 0, "1.2.3~rc1+git5.4a69640.dirty-1"},
		{"4a69640", 27, "0.0.0+git27.4a69640-1"},
		{"4a69640-dirty", 27, "0.0.0+git27.4a69640.dirty-1"},
		{"release-5-g4a69640", 0, "0.0.0+git5.4a69640-1"},
		{"dev", 0, "0.0.0+dev-1"},
		{"", 0, "0.0.0+unknown-1"},
		{"v1.2_3/x", 0, "1.2.3.x-1"},
	}
	for _, tt := range tests {
		got := VersionFromDescribe(tt.describe, tt.commits)
		if got != tt.want {
			t.Errorf("VersionFromDescribe(%q, %d) = %q, want %q", tt.describe, tt.commits, got, tt.want)
		}
		if !ValidVersion(got) {
			t.Errorf("%q is not a valid opkg version", got)
		}
	}
}

// TestVersionOrder checks that versions of later commits compare greater,
// with opkg's (dpkg's) comparison.
func TestVersionOrder(t *testing.T) {
	ordered := []string{
		VersionFromDescribe("aaaaaaa", 9),
		VersionFromDescribe("0000000", 10),
		VersionFromDescribe("fffffff", 100),
		VersionFromDescribe("v0.1.0-rc1", 0),
		VersionFromDescribe("v0.1.0-rc1-3-g0000000", 0),
		VersionFromDescribe("v0.1.0", 0),
		VersionFromDescribe("v0.1.0-dirty", 0),
		VersionFromDescribe("v0.1.0-1-gfffffff", 0),
		VersionFromDescribe("v0.1.0-2-g0000000", 0),
		VersionFromDescribe("v0.1.0-2-g0000000-dirty", 0),
		VersionFromDescribe("v0.1.0-10-g0000000", 0),
		VersionFromDescribe("v0.1.1", 0),
		VersionFromDescribe("v0.10.0", 0),
	}
	dpkg, _ := exec.LookPath("dpkg")
	for i := 1; i < len(ordered); i++ {
		a, b := ordered[i-1], ordered[i]
		if compareVersions(a, b) >= 0 {
			t.Errorf("%s is not before %s", a, b)
		}
		if dpkg != "" { // a second opinion where Debian's tool exists
			if err := exec.Command(dpkg, "--compare-versions", a, "lt", b).Run(); err != nil {
				t.Errorf("dpkg: %s is not before %s: %v", a, b, err)
			}
		}
	}
}

func TestValidVersion(t *testing.T) {
	for v, want := range map[string]bool{
		"1.0": true, "1.0-1": true, "2:1.0-r1": true, "1.0~rc1-1": true, "1.0-1-2": true,
		"": false, "v1.0": false, "1.0-": false, "x:1.0": false, "1.0 1": false, "1_0": false, "1.0-a_b": false,
	} {
		if got := ValidVersion(v); got != want {
			t.Errorf("ValidVersion(%q) = %v", v, got)
		}
	}
}

// compareVersions is opkg's pkg_compare_versions (dpkg's verrevcmp) for
// versions without epochs: the revision after the last '-' is compared
// after the upstream part.
func compareVersions(a, b string) int {
	split := func(v string) (string, string) {
		for i := len(v) - 1; i >= 0; i-- {
			if v[i] == '-' {
				return v[:i], v[i+1:]
			}
		}
		return v, ""
	}
	ua, ra := split(a)
	ub, rb := split(b)
	if c := verrevcmp(ua, ub); c != 0 {
		return c
	}
	return verrevcmp(ra, rb)
}

func order(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return 0
	case c >= 'A' && c <= 'Z', c >= 'a' && c <= 'z':
		return int(c)
	case c == '~':
		return -1
	case c != 0:
		return int(c) + 256
	}
	return 0
}

func verrevcmp(a, b string) int {
	at := func(s string, i int) byte {
		if i < len(s) {
			return s[i]
		}
		return 0
	}
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		for (i < len(a) && !isDigit(a[i])) || (j < len(b) && !isDigit(b[j])) {
			ac, bc := order(at(a, i)), order(at(b, j))
			if ac != bc {
				return ac - bc
			}
			i++
			j++
		}
		for at(a, i) == '0' {
			i++
		}
		for at(b, j) == '0' {
			j++
		}
		first := 0
		for isDigit(at(a, i)) && isDigit(at(b, j)) {
			if first == 0 {
				first = int(a[i]) - int(b[j])
			}
			i++
			j++
		}
		if isDigit(at(a, i)) {
			return 1
		}
		if isDigit(at(b, j)) {
			return -1
		}
		if first != 0 {
			return first
		}
	}
	return 0
}
