package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/clock/clocktest"
	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
	"github.com/dpf-router/dpf/src/lease/leasetest"
	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/server"
)

// reloadBase is the configuration the reload tests start from.
const reloadBase = `config dpf 'main'
	list lan_interface 'br-test'
	option wan_interface 'wan-test'
	option external_address '203.0.113.1'
	option backend 'nftables'
	option db '/nonexistent/leases.db'
	option socket '/nonexistent/dpfd.sock'
	option dbus '0'
	option min_lifetime '120'
	option rate_limit '1000'
	option rate_burst '1000'
	option log_level 'info'
`

var t0 = time.Date(2026, 11, 24, 12, 0, 0, 0, time.UTC)

// reloadRig is a daemon wired as New wires one, with fakes for the
// firewall and the store and a fake clock, reading its configuration from
// a file the test rewrites.
type reloadRig struct {
	d     *Daemon
	path  string
	clk   *clocktest.Fake
	st    *leasetest.Store
	logs  *bytes.Buffer // written by the test goroutine only: Run logs nothing at info
	level *slog.LevelVar
}

// newReloadRig starts from text; with fixedLevel the command line is
// taken to have set the log level (Options.Level nil).
func newReloadRig(t *testing.T, text string, fixedLevel bool) *reloadRig {
	t.Helper()
	r := &reloadRig{path: filepath.Join(t.TempDir(), "dpf"), clk: clocktest.NewFake(t0), st: leasetest.NewStore(),
		logs: new(bytes.Buffer), level: new(slog.LevelVar)}
	r.write(t, text)
	cfg, err := config.Load(r.path)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.level.UnmarshalText([]byte(cfg.LogLevel)); err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewTextHandler(r.logs, &slog.HandlerOptions{Level: r.level}))
	d := &Daemon{cfgPath: r.path, log: log, level: r.level, clk: r.clk, started: t0, cfg: cfg,
		fw: fakeFirewall{leasetest.NewFirewall()}, lan: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}}
	if fixedLevel {
		d.level = nil
	}
	d.reserved = newReservedPorts(cfg.ReservedPorts, cfg.WANInterface, d.ExternalAddr, log)
	d.m = lease.New(lease.Config{MinLifetime: cfg.MinLifetime, MaxLifetime: cfg.MaxLifetime, MaxPerHost: cfg.MaxPerHost,
		MaxLeases: cfg.MaxLeases, CheckpointInterval: checkpointInterval(cfg), Policy: d.policy(), Clock: r.clk,
		Logger: log, Firewall: d.fw, Store: r.st, Reserved: d.reserved.reserved})
	mode, keys := serverAuth(cfg)
	d.srv = server.New(server.Config{Manager: d.m, ExternalAddr: d.ExternalAddr, RateLimit: cfg.RateLimit,
		RateBurst: cfg.RateBurst, AuthMode: mode, AuthKeys: keys, Clock: r.clk, Logger: log})
	d.updateExternal()
	r.d = d
	return r
}

func (r *reloadRig) write(t *testing.T, text string) {
	t.Helper()
	if err := os.WriteFile(r.path, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload writes text and reloads.
func (r *reloadRig) reload(t *testing.T, text string) ([]string, error) {
	t.Helper()
	r.write(t, text)
	res, err := r.d.Reload()
	if err == nil && res.OK == (len(res.RestartNeeded) > 0) {
		t.Fatalf("reload result %+v: OK must mean nothing needs a restart", res)
	}
	return res.RestartNeeded, err
}

// mapPort asks for a NAT-PMP mapping of TCP port 8080 for lifetime
// seconds from the LAN host and returns the answer.
func (r *reloadRig) mapPort(t *testing.T, port uint16, lifetime uint32) natpmp.Response {
	t.Helper()
	req := natpmp.Request{Op: natpmp.OpMapTCP, InternalPort: port, SuggestedExternalPort: port, Lifetime: lifetime}
	b := r.d.srv.Handle(req.AppendTo(nil), netip.AddrPortFrom(lanHost, 40000))
	if b == nil {
		t.Fatal("no answer")
	}
	resp, err := natpmp.ParseResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// TestReloadAllOrNothing: a reload that finds an option changed which
// needs a restart names it and applies nothing, not even the options it
// could apply; once the file is back to what runs, the same live change
// applies.
func TestReloadAllOrNothing(t *testing.T) {
	r := newReloadRig(t, reloadBase, false)
	withMin := strings.Replace(reloadBase, "option min_lifetime '120'", "option min_lifetime '600'", 1)
	both := strings.Replace(withMin, "option backend 'nftables'", "option backend 'iptables'", 1)
	both = strings.Replace(both, "option db '/nonexistent/leases.db'", "option db '/nonexistent/other.db'", 1)
	both = strings.Replace(both, "option log_level 'info'", "option log_level 'debug'", 1)
	names, err := r.reload(t, both)
	if err != nil || !slices.Equal(names, []string{"backend", "db"}) {
		t.Fatalf("reload with backend and db changed: restart needed %v, %v; want [backend db]", names, err)
	}
	if got := r.mapPort(t, 8080, 60); got.Lifetime != 120 {
		t.Errorf("granted %d s after a reload that needed a restart: min_lifetime applied anyway (want 120)", got.Lifetime)
	}
	if r.level.Level() != slog.LevelInfo {
		t.Errorf("log level %v after a reload that needed a restart, want info", r.level.Level())
	}
	if st := r.d.Status(); st.Backend != "nftables" || st.DB != "/nonexistent/leases.db" {
		t.Errorf("status after a reload that needed a restart: backend %s db %s", st.Backend, st.DB)
	}
	if !strings.Contains(r.logs.String(), "restart_needed=backend,db") {
		t.Errorf("the log does not name the options: %s", r.logs.String())
	}

	names, err = r.reload(t, withMin)
	if err != nil || len(names) != 0 {
		t.Fatalf("reload of a live change: restart needed %v, %v", names, err)
	}
	if got := r.mapPort(t, 8081, 60); got.Lifetime != 600 {
		t.Errorf("granted %d s after min_lifetime became 600", got.Lifetime)
	}

	// An invalid file is an error naming its line and changes nothing.
	_, err = r.reload(t, strings.Replace(reloadBase, "option min_lifetime '120'", "option min_lifetime 'abc'", 1))
	if err == nil || !strings.Contains(err.Error(), r.path+":9: option min_lifetime") {
		t.Fatalf("reload of an invalid file: %v", err)
	}
	if got := r.mapPort(t, 8082, 60); got.Lifetime != 600 {
		t.Errorf("granted %d s after a failed reload, want 600 still", got.Lifetime)
	}
}

// TestReloadLogLevel: option log_level applies on reload (debug lines
// appear, then go), unless the command line fixed the level.
func TestReloadLogLevel(t *testing.T) {
	r := newReloadRig(t, reloadBase, false)
	debug := strings.Replace(reloadBase, "option log_level 'info'", "option log_level 'debug'", 1)
	r.d.log.Debug("marker one")
	if _, err := r.reload(t, debug); err != nil {
		t.Fatal(err)
	}
	r.d.log.Debug("marker two")
	if _, err := r.reload(t, strings.Replace(reloadBase, "option log_level 'info'", "option log_level 'error'", 1)); err != nil {
		t.Fatal(err)
	}
	r.d.log.Warn("marker three")
	r.d.log.Error("marker four")
	logs := r.logs.String()
	for m, want := range map[string]bool{"marker one": false, "marker two": true, "marker three": false, "marker four": true} {
		if strings.Contains(logs, m) != want {
			t.Errorf("%q logged: %v, want %v\n%s", m, !want, want, logs)
		}
	}

	fixed := newReloadRig(t, reloadBase, true)
	if _, err := fixed.reload(t, debug); err != nil {
		t.Fatal(err)
	}
	fixed.d.log.Debug("marker five")
	if strings.Contains(fixed.logs.String(), "marker five") {
		t.Errorf("option log_level overrode the command line's level")
	}
}

// TestReloadRateLimit: rate_limit and rate_burst apply on reload: a host
// gets the new burst, then the new rate.
func TestReloadRateLimit(t *testing.T) {
	r := newReloadRig(t, reloadBase, false)
	addr := func() int {
		n := 0
		for range 20 {
			if r.d.srv.Handle([]byte{0, 0}, netip.AddrPortFrom(lanHost, 40000)) != nil {
				n++
			}
		}
		return n
	}
	if got := addr(); got != 20 {
		t.Fatalf("answered %d of 20 at 1000/s", got)
	}
	text := strings.Replace(reloadBase, "option rate_limit '1000'", "option rate_limit '0.5'", 1)
	text = strings.Replace(text, "option rate_burst '1000'", "option rate_burst '3'", 1)
	if _, err := r.reload(t, text); err != nil {
		t.Fatal(err)
	}
	if got := addr(); got != 3 {
		t.Fatalf("answered %d of 20 with rate_burst 3", got)
	}
	r.clk.Advance(4 * time.Second)
	if got := addr(); got != 2 {
		t.Fatalf("answered %d of 20 after 4 s at rate_limit 0.5", got)
	}
}

// TestReloadCheckpointInterval: checkpoint_interval applies on reload to
// the lease manager (a renewal's expiry reaches the store within the new
// interval, not the old 300 s) and to the daemon's own savings (epoch and
// replay state, watch reads d.cfg).
func TestReloadCheckpointInterval(t *testing.T) {
	r := newReloadRig(t, reloadBase, false)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.d.m.Run(ctx) }()
	defer func() { cancel(); <-done }()
	if got := r.mapPort(t, 8080, 3600); got.Result != natpmp.ResultSuccess {
		t.Fatalf("map: %+v", got)
	}
	r.clk.Advance(time.Minute)
	if got := r.mapPort(t, 8080, 3600); got.Result != natpmp.ResultSuccess {
		t.Fatalf("renewal: %+v", got)
	}
	key := lease.Key{Proto: firewall.TCP, ExternalPort: 8080}
	if l, _ := r.st.Get(key); !l.Expires.Equal(t0.Add(time.Hour)) {
		t.Fatalf("stored expiry %v before a checkpoint", l.Expires)
	}
	if _, err := r.reload(t, reloadBase+"\toption checkpoint_interval '10'\n"); err != nil {
		t.Fatal(err)
	}
	if got := checkpointInterval(r.d.cfg); got != 10*time.Second {
		t.Errorf("the daemon's interval (epoch, replay state) is %v, want 10s", got)
	}
	r.clk.Advance(10 * time.Second)
	want := t0.Add(time.Minute + time.Hour)
	for i := 0; ; i++ {
		if l, _ := r.st.Get(key); l.Expires.Equal(want) {
			break
		}
		if i == 2000 {
			t.Fatalf("stored expiry not %v 10 s after checkpoint_interval became 10", want)
		}
		time.Sleep(time.Millisecond)
	}
}
