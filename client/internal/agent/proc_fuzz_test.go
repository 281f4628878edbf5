package agent

import (
	"errors"
	"strconv"
	"testing"
)

// FuzzParseStat checks the /proc readers: parseStat never panics and fails
// only with errBadStat, and parseSocketLink accepts exactly
// "socket:[INODE]". The committed corpus is in testdata/fuzz/FuzzParseStat.
func FuzzParseStat(f *testing.F) {
	f.Add([]byte("1234 (sleep) S 1 1234 1234 0 -1 4194304 92 0 0 0 0 0 0 0 20 0 1 0 4153 8450048 200 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"))
	f.Add([]byte("7 (a) b) (c) R 1 2 3 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 99\n"))
	f.Add([]byte("socket:[12345]"))
	f.Add([]byte("()"))
	f.Fuzz(func(t *testing.T, b []byte) {
		if _, err := parseStat(b); err != nil && !errors.Is(err, errBadStat) {
			t.Fatalf("parseStat error %v is not errBadStat", err)
		}
		if n, ok := parseSocketLink(string(b)); ok && string(b) != "socket:["+strconv.FormatUint(n, 10)+"]" {
			// Leading zeros are the one accepted spelling that does not
			// print back the same.
			if m, ok2 := parseSocketLink("socket:[" + strconv.FormatUint(n, 10) + "]"); !ok2 || m != n {
				t.Fatalf("parseSocketLink(%q) = %d, which does not round-trip", b, n)
			}
		}
	})
}
