package systest

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

// The soak: soakHosts LAN hosts (each a network namespace of its own) hold
// soakMappings mappings each, half PCP and half NAT-PMP, with a short
// lifetime renewed every few seconds.
const (
	soakHosts    = 50
	soakMappings = 50
	soakLeases   = soakHosts * soakMappings
	// soakLifetime is the lifetime asked for; soakRenew ± soakJitter is
	// the time between two renewals of a mapping, so a renewal has three
	// renewal periods of slack before its lease would lapse.
	soakLifetime = 20 * time.Second
	soakRenew    = 5 * time.Second
	soakJitter   = time.Second
	// soakCreatePace spaces a host's creations at 20 a second, under the
	// rate limit the test configures (40 a second, burst 40).
	soakCreatePace = 50 * time.Millisecond
	// soakCreateWithin bounds the creation of all the leases.
	soakCreateWithin = 3 * time.Minute
	// soakSample is how often dpfd's resource use is sampled.
	soakSample = 3 * time.Second
	// soakWarmup is left out of the flatness check: every lease has been
	// renewed twice by then, and the Go heap has found its size.
	soakWarmup = 10 * time.Second
	// defaultSoakDuration is the short form that every test run
	// includes; `make soak` sets DPF_SOAK_DURATION=10m.
	defaultSoakDuration = 45 * time.Second
	soakDurationEnv     = "DPF_SOAK_DURATION"
)

// Flatness margins: how much the last quarter's maximum may exceed the first
// quarter's. RSS may grow by soakRSSMargin or soakRSSSlack, whichever is
// larger (the Go heap settles in steps of its pacer).
const (
	soakRSSMargin       = 0.25
	soakRSSSlack        = 4 << 20
	soakGoroutineMargin = 10
	soakFDMargin        = 5
)

// soakSampleRow is one measurement of dpfd.
type soakSampleRow struct {
	at         time.Duration // since the soak began (all leases created)
	leases     int
	expired    uint64
	renewed    uint64
	rss        uint64 // VmRSS, bytes
	heap       uint64 // Go heap in use, bytes (from status)
	goroutines int
	fds        int // entries of /proc/PID/fd
}

func soakDuration(t *testing.T) time.Duration {
	t.Helper()
	s := os.Getenv(soakDurationEnv)
	if s == "" {
		return defaultSoakDuration
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 4*soakSample {
		t.Fatalf("%s=%q: want a duration of at least %v", soakDurationEnv, s, 4*soakSample)
	}
	return d
}

// soakMapping is one of a host's mappings.
type soakMapping struct {
	pcp   bool
	proto uint8 // 6 or 17
	in    uint16
	ext   uint16 // granted at creation
	nonce [12]byte
	due   time.Time // next renewal
}

// TestSoak: soakHosts LAN hosts with soakMappings mappings each (PCP and
// NAT-PMP) renew them for DPF_SOAK_DURATION (default 45 s; `make soak`:
// 10 minutes). Every renewal must be answered, with success and the same
// external port; dpfd must hold all the leases throughout and expire none;
// its RSS, goroutines and open descriptors must stay flat (the last
// quarter's maximum within a margin of the first quarter's, after a
// warm-up). The samples go to $DPF_ARTIFACTS/soak.csv when that is set.
func TestSoak(t *testing.T) {
	needTools(t)
	dur := soakDuration(t)
	r := newRouter(t, "nftables", soakHosts)
	r.writeConfig(fmt.Sprintf(`	option max_per_host '%d'
	option max_leases '%d'
	option min_lifetime '1'
	option rate_limit '40'
	option rate_burst '40'
	option checkpoint_interval '10'
	option log_level 'info'
`, soakMappings, soakLeases))
	r.start()
	pid := r.cmd.Process.Pid

	var (
		created  sync.WaitGroup
		stop     = make(chan struct{})
		done     sync.WaitGroup
		renewals atomic.Uint64
		errMu    sync.Mutex
		errs     []string
	)
	fail := func(format string, a ...any) {
		errMu.Lock()
		defer errMu.Unlock()
		if len(errs) < 50 {
			errs = append(errs, fmt.Sprintf(format, a...))
		}
	}
	created.Add(soakHosts)
	done.Add(soakHosts)
	for h := range soakHosts {
		q := newRequester(t, r.lab.LAN[h], lab.LANHost(h))
		go func() {
			defer done.Done()
			soakHost(h, q, &created, stop, &renewals, fail)
		}()
	}
	waited := make(chan struct{})
	go func() { created.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(soakCreateWithin):
		close(stop)
		done.Wait()
		t.Fatalf("the hosts did not create their leases within %v: %v", soakCreateWithin, errs)
	}
	errMu.Lock()
	failed := len(errs) > 0
	errMu.Unlock()
	if failed {
		close(stop)
		done.Wait()
		t.Fatalf("creating the leases: %s", strings.Join(errs, "\n"))
	}
	t.Logf("%d leases created; soaking for %v", soakLeases, dur)

	// Sample until the end; the hosts renew meanwhile.
	start := time.Now()
	var samples []soakSampleRow
	tick := time.NewTicker(soakSample)
	for time.Since(start) < dur {
		<-tick.C
		st := r.status()
		s := soakSampleRow{at: time.Since(start), leases: st.Leases, expired: st.Counters["expired"],
			renewed: st.Counters["renewed"], heap: st.Runtime.HeapInuse, goroutines: st.Runtime.Goroutines}
		var err error
		if s.rss, err = procRSS(pid); err != nil {
			t.Fatal(err)
		}
		if s.fds, err = procFDs(pid); err != nil {
			t.Fatal(err)
		}
		samples = append(samples, s)
		if s.leases != soakLeases || s.expired != 0 {
			t.Errorf("at %v: %d leases (want %d), %d expired", s.at.Round(time.Second), s.leases, soakLeases, s.expired)
		}
	}
	tick.Stop()
	close(stop)
	done.Wait()
	writeSoakCSV(t, samples)
	for _, e := range errs {
		t.Error(e)
	}
	st := r.status()
	t.Logf("%d renewals answered; dpfd: %d leases, counters %v, runtime %+v", renewals.Load(), st.Leases, st.Counters, st.Runtime)
	if want := uint64(dur/(soakRenew+soakJitter)) * soakLeases; renewals.Load() < want/2 {
		t.Errorf("only %d renewals in %v (expected about %d)", renewals.Load(), dur, want)
	}
	if st.Counters["expired"] != 0 || st.Leases != soakLeases {
		t.Errorf("at the end: %d leases, %d expired", st.Leases, st.Counters["expired"])
	}
	checkFlat(t, samples)
}

// soakHost creates host h's mappings, reports on created, then renews each
// one about every soakRenew until stop is closed. Every answer must be a
// success with the port granted at creation.
func soakHost(h int, q *requester, created *sync.WaitGroup, stop <-chan struct{}, renewals *atomic.Uint64, fail func(string, ...any)) {
	rng := rand.New(rand.NewPCG(uint64(h), 0x50a4))
	client := lab.LANHost(h)
	ms := make([]*soakMapping, soakMappings)
	for i := range ms {
		m := &soakMapping{pcp: i%2 == 0, proto: []uint8{6, 17}[i/2%2], in: uint16(20000 + i)}
		m.nonce = [12]byte{0x50, byte(h), byte(i)}
		ms[i] = m
	}
	renew := func(m *soakMapping) (uint16, error) {
		if m.pcp {
			resp, _, err := q.pcpMap(client, m.nonce, m.proto, m.in, m.ext, uint32(soakLifetime/time.Second))
			if err == nil && (resp.Result != pcp.ResultSuccess || resp.Lifetime != uint32(soakLifetime/time.Second)) {
				err = fmt.Errorf("answered %s, lifetime %d", pcp.ResultString(resp.Result), resp.Lifetime)
			}
			return resp.Map.ExternalPort, err
		}
		op := uint8(natpmp.OpMapTCP)
		if m.proto == 17 {
			op = natpmp.OpMapUDP
		}
		resp, _, err := q.natpmpMap(op, m.in, m.ext, uint32(soakLifetime/time.Second))
		if err == nil && (resp.Result != natpmp.ResultSuccess || resp.Lifetime != uint32(soakLifetime/time.Second)) {
			err = fmt.Errorf("answered result %d, lifetime %d", resp.Result, resp.Lifetime)
		}
		return resp.ExternalPort, err
	}
	jitter := func() time.Duration { return soakRenew - soakJitter + time.Duration(rng.Int64N(int64(2*soakJitter))) }
	// One schedule for creations and renewals: creating the leases takes
	// long (each costs dpfd a durable write and a firewall change), so
	// the first ones must be renewed before the last ones exist. A due
	// renewal goes first; creations follow in order, soakCreatePace
	// apart.
	start := time.Now()
	for i, m := range ms {
		m.due = start.Add(time.Duration(i) * soakCreatePace)
	}
	left := len(ms) // not yet created
	for {
		var renewal, creation *soakMapping
		for _, m := range ms {
			switch {
			case m.ext != 0 && (renewal == nil || m.due.Before(renewal.due)):
				renewal = m
			case m.ext == 0 && (creation == nil || m.due.Before(creation.due)):
				creation = m
			}
		}
		next := renewal
		if next == nil || (creation != nil && time.Now().Before(renewal.due) && creation.due.Before(renewal.due)) {
			next = creation
		}
		select {
		case <-stop:
			if left > 0 {
				created.Done()
			}
			return
		case <-time.After(time.Until(next.due)):
		}
		ext, err := renew(next)
		switch {
		case next.ext == 0 && err != nil:
			fail("host %d: creating %d/%d: %v", h, next.proto, next.in, err)
			next.due = time.Now().Add(24 * time.Hour) // given up; the test fails
			if left--; left == 0 {
				created.Done()
			}
			continue
		case next.ext == 0:
			next.ext = ext
			if left--; left == 0 {
				created.Done()
			}
		case err != nil:
			fail("host %d: renewing %d/%d: %v", h, next.proto, next.in, err)
		case ext != next.ext:
			fail("host %d: renewal of %d/%d moved the external port from %d to %d", h, next.proto, next.in, next.ext, ext)
		default:
			renewals.Add(1)
		}
		next.due = time.Now().Add(jitter())
	}
}

// checkFlat compares, after soakWarmup, the maxima of the first and the last
// quarter of the samples.
func checkFlat(t *testing.T, samples []soakSampleRow) {
	t.Helper()
	var s []soakSampleRow
	for _, x := range samples {
		if x.at >= soakWarmup {
			s = append(s, x)
		}
	}
	if len(s) < 4 {
		t.Fatalf("%d samples after the warm-up; need 4", len(s))
	}
	q := len(s) / 4
	first, last := s[:q], s[len(s)-q:]
	peak := func(xs []soakSampleRow, f func(soakSampleRow) uint64) uint64 {
		var m uint64
		for _, x := range xs {
			m = max(m, f(x))
		}
		return m
	}
	rss := func(x soakSampleRow) uint64 { return x.rss }
	gor := func(x soakSampleRow) uint64 { return uint64(x.goroutines) }
	fds := func(x soakSampleRow) uint64 { return uint64(x.fds) }
	r0, r1 := peak(first, rss), peak(last, rss)
	if allowed := r0 + max(uint64(float64(r0)*soakRSSMargin), soakRSSSlack); r1 > allowed {
		t.Errorf("RSS grew: first quarter's maximum %d KiB, last quarter's %d KiB (allowed %d KiB)", r0>>10, r1>>10, allowed>>10)
	}
	if g0, g1 := peak(first, gor), peak(last, gor); g1 > g0+soakGoroutineMargin {
		t.Errorf("goroutines grew: %d in the first quarter, %d in the last", g0, g1)
	}
	if f0, f1 := peak(first, fds), peak(last, fds); f1 > f0+soakFDMargin {
		t.Errorf("open descriptors grew: %d in the first quarter, %d in the last", f0, f1)
	}
	t.Logf("flatness over %d samples: RSS max %d -> %d KiB, goroutines %d -> %d, fds %d -> %d",
		len(s), r0>>10, r1>>10, peak(first, gor), peak(last, gor), peak(first, fds), peak(last, fds))
}

// writeSoakCSV writes the samples to $DPF_ARTIFACTS/soak.csv, if set.
func writeSoakCSV(t *testing.T, samples []soakSampleRow) {
	t.Helper()
	dir := os.Getenv("DPF_ARTIFACTS")
	if dir == "" {
		return
	}
	var b strings.Builder
	b.WriteString("seconds,leases,expired,renewed,rss_bytes,heap_inuse_bytes,goroutines,fds\n")
	for _, s := range samples {
		fmt.Fprintf(&b, "%.1f,%d,%d,%d,%d,%d,%d,%d\n", s.at.Seconds(), s.leases, s.expired, s.renewed, s.rss, s.heap, s.goroutines, s.fds)
	}
	if err := os.WriteFile(filepath.Join(dir, "soak.csv"), []byte(b.String()), 0o644); err != nil {
		t.Errorf("writing soak.csv: %v", err)
	}
}

// procRSS reads VmRSS of process pid, in bytes.
func procRSS(pid int) (uint64, error) {
	b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "status"))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) == 2 && f[1] == "kB" {
				n, err := strconv.ParseUint(f[0], 10, 64)
				return n << 10, err
			}
		}
	}
	return 0, fmt.Errorf("no VmRSS line in /proc/%d/status", pid)
}

// procFDs counts the open descriptors of process pid.
func procFDs(pid int) (int, error) {
	ents, err := os.ReadDir(filepath.Join("/proc", strconv.Itoa(pid), "fd"))
	return len(ents), err
}
