package daemon

import (
	"bytes"
	"testing"
)

func TestParseVmRSS(t *testing.T) {
	status := "Name:\tdpfd\nVmPeak:\t  1262540 kB\nVmRSS:\t    11264 kB\nRssAnon:\t    3840 kB\n"
	if n, ok := parseVmRSS([]byte(status)); !ok || n != 11264*1024 {
		t.Fatalf("%d %v", n, ok)
	}
	for _, bad := range []string{"", "Name:\tx\n", "VmRSS:\t12 MB\n", "VmRSS:\t-1 kB\n", "VmRSS:\n", "VmRSS: 99999999999999999999 kB\n"} {
		if n, ok := parseVmRSS([]byte(bad)); ok {
			t.Errorf("%q: %d, want not ok", bad, n)
		}
	}
	rt := runtimeStats()
	if rt.Goroutines < 1 || rt.HeapInuse == 0 || rt.RSS == 0 || rt.OpenFDs < 3 {
		t.Fatalf("runtimeStats = %+v", rt)
	}
}

// FuzzParseVmRSS checks that parseVmRSS never panics and that what it
// accepts is a whole number of kB found on a VmRSS line. The committed
// corpus is in testdata/fuzz/FuzzParseVmRSS.
func FuzzParseVmRSS(f *testing.F) {
	f.Add([]byte("Name:\tdpfd\nVmRSS:\t    11264 kB\n"))
	f.Add([]byte("VmRSS: 1 kB"))
	f.Add([]byte("VmRSS:\t\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, ok := parseVmRSS(b)
		if !ok {
			if n != 0 {
				t.Fatalf("not ok but %d", n)
			}
			return
		}
		if n%1024 != 0 || !bytes.Contains(b, []byte("VmRSS:")) {
			t.Fatalf("%d from %q", n, b)
		}
	})
}
