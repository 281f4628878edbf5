package systest

// The LuCI app (luci/): its status view runs in headless Chromium against
// dpfd in the lab, through the real rpcd plugin ("dpfd rpcd call"), and
// what it deletes is gone from the router's firewall. The settings form is
// checked against the configuration parser.
//
// Chromium and the page run in the host's namespace and talk only to an
// HTTP server of this test on 127.0.0.1, which stands in for uhttpd and
// rpcd: it serves the app's files and luci/test/harness/ (the LuCI runtime
// stand-in), and answers ubus JSON-RPC calls the way rpcd does for an exec
// plugin: it checks them against the ACL the calling session's login gets
// from the two packages' ACL files (luciLogins: one that may delete, one
// that may only read), answers "session" "access" from the same ACL, runs
// "dpfd rpcd call METHOD" in the router's namespace with the arguments on
// stdin, and returns its JSON object. luci/test/run.mjs drives the browser.
//
// Needs: node, /usr/bin/chromium, and luci/test/node_modules (npm ci in
// luci/test); make test installs them.

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
	"github.com/dpf-router/dpf/src/internal/testenv"
)

const (
	// chromiumPath is Debian's chromium package.
	chromiumPath = "/usr/bin/chromium"
	// browserRunTimeout bounds one run of run.mjs (start Chromium, load
	// the page, watch the countdown, delete); run.mjs gives up by itself
	// after 120 s.
	browserRunTimeout = 150 * time.Second
	// rpcdCallTimeout bounds one "dpfd rpcd call", as rpcd's exec timeout
	// does on the router.
	rpcdCallTimeout = 20 * time.Second
	// artifactsEnv names the directory for screenshots; relative paths are
	// relative to the repository root, default test-artifacts.
	artifactsEnv = "DPF_ARTIFACTS"
)

// TestLuCIStatusPage: the status page lists the leases two natpmpc requests
// made, with client, ports and protocol, the router's external address
// and backend, and every counter dpfd reports under its label; for a login
// that may delete leases, its Delete button closes one pinhole at once
// (gone from dpfd's list and unreachable from the internet) while the
// other keeps working; for a login that may only read, Delete is disabled,
// a click on it sends nothing and the pinhole stays; with dpfd stopped the
// page says so.
func TestLuCIStatusPage(t *testing.T) {
	needTools(t)
	b := needBrowser(t)
	r := newRouter(t, "nftables", 1)
	r.start()
	r.echoServers(0, 8080)
	r.echoServers(0, 9053)
	tcpPort, _, err := r.natpmpc(0, "-a", "8080", "8080", "tcp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	udpPort, _, err := r.natpmpc(0, "-a", "9053", "9053", "udp", "3600")
	if err != nil {
		t.Fatal(err)
	}
	r.mustReach("tcp", tcpPort)
	r.mustReach("udp", udpPort)

	h := startLuCIHarness(t, r)
	shots := artifactsDir(t)
	tcpKey, udpKey := fmt.Sprintf("tcp/%d", tcpPort), fmt.Sprintf("udp/%d", udpPort)
	res := b.run(t, "--url", h.url("dpf/status", "operator"), "--expect-leases", "2", "--delete", tcpKey,
		"--shot", filepath.Join(shots, "luci-status.png"),
		"--shot-after", filepath.Join(shots, "luci-status-after-delete.png"))

	// What the page showed before the delete.
	st := res.Before.Status
	if st["external_address"] != lab.RouterWAN.String() || st["backend"] != "nftables" {
		t.Errorf("status area shows external address %q, backend %q; want %s, nftables", st["external_address"], st["backend"], lab.RouterWAN)
	}
	if !strings.HasPrefix(st["leases"], "2 of ") {
		t.Errorf("status area shows %q pinholes, want 2 of the maximum", st["leases"])
	}
	if res.Before.Counters["created"] != "2" {
		t.Errorf("counters: %v, want created 2", res.Before.Counters)
	}
	counters := r.statusOf(t).Counters
	for name := range counters {
		if l, ok := res.Before.CounterLabels[name]; !ok || l == "" || l == name {
			t.Errorf("dpfd reports counter %s; the page shows it with label %q (shown: %v)", name, l, ok)
		}
	}
	if len(res.Before.CounterLabels) != len(counters) {
		t.Errorf("the page shows counters %v; dpfd reports %v", res.Before.CounterLabels, counters)
	}
	host := lab.LANHost(0).String()
	want := map[string]pageRow{
		tcpKey: {Internal: host + ":8080", ExtPort: strconv.Itoa(int(tcpPort)), Proto: "TCP"},
		udpKey: {Internal: host + ":9053", ExtPort: strconv.Itoa(int(udpPort)), Proto: "UDP"},
	}
	if len(res.Before.Rows) != 2 {
		t.Fatalf("page shows %d lease rows, want 2: %+v", len(res.Before.Rows), res.Before.Rows)
	}
	for _, row := range res.Before.Rows {
		w, ok := want[row.Key]
		if !ok || row.Internal != w.Internal || row.ExtPort != w.ExtPort || row.Proto != w.Proto ||
			!strings.Contains(row.Client, host) || !strings.Contains(row.Description, "NAT-PMP") {
			t.Errorf("lease row %+v, want %+v from client %s by NAT-PMP", row, w, host)
		}
		if row.Delete != "enabled" {
			t.Errorf("lease row %s: Delete %s for a login that may delete", row.Key, row.Delete)
		}
	}
	if res.Before.ReadOnly != "" {
		t.Errorf("the page tells a login that may delete: %q", res.Before.ReadOnly)
	}
	if len(res.Countdown) != 2 || countdownSeconds(t, res.Countdown[1]) >= countdownSeconds(t, res.Countdown[0]) {
		t.Errorf("time left does not count down: %q", res.Countdown)
	}
	if !slices.Equal(res.Before.Tabs, []string{"Status", "Settings"}) {
		t.Errorf("menu tabs %q, want Status, Settings", res.Before.Tabs)
	}

	// After the click: the page, the calls it made, and the router.
	if len(res.After.Rows) != 1 || res.After.Rows[0].Key != udpKey {
		t.Errorf("after deleting %s the page shows %+v, want only %s", tcpKey, res.After.Rows, udpKey)
	}
	if !strings.HasPrefix(res.After.Status["leases"], "1 of ") {
		t.Errorf("after the delete the status area shows %q pinholes, want 1", res.After.Status["leases"])
	}
	if d := h.callsOf("delete"); len(d) != 1 || !deletes(d[0], "tcp", tcpPort) {
		t.Errorf("dpf delete calls: %q, want one for %s", d, tcpKey)
	}
	t.Logf("row gone %d ms after the click", res.DeleteMillis)
	ls := r.leases()
	if len(ls) != 1 || ls[0].Proto != "udp" || ls[0].ExternalPort != udpPort {
		t.Fatalf("dpfd's leases after the delete: %+v, want only udp/%d", ls, udpPort)
	}
	r.mustNotReach("tcp", tcpPort)
	r.mustReach("udp", udpPort)

	// A login that may only read: uhttpd would refuse its delete, and the
	// page offers none; a script's click on the disabled button sends
	// nothing.
	if code := h.callError("viewer", "dpf", "delete", fmt.Sprintf(`{"proto":"udp","ext_port":%d}`, udpPort)); code != jsonrpcAccessDenied {
		t.Fatalf("a viewer's dpf delete: JSON-RPC error %d, want %d (Access denied)", code, jsonrpcAccessDenied)
	}
	res = b.run(t, "--url", h.url("dpf/status", "viewer"), "--expect-leases", "1", "--try-delete", udpKey,
		"--shot", filepath.Join(shots, "luci-status-readonly.png"))
	if !res.Tried || len(res.Before.Rows) != 1 || res.Before.Rows[0].Delete != "disabled" {
		t.Errorf("read-only login: clicked %v; rows %+v, want one with Delete disabled", res.Tried, res.Before.Rows)
	}
	if res.Before.ReadOnly == "" {
		t.Error("the page does not tell a read-only login that it may not delete")
	}
	if len(res.After.Rows) != 1 || res.After.Rows[0].Key != udpKey {
		t.Errorf("after a read-only login's click on Delete the page shows %+v, want %s still", res.After.Rows, udpKey)
	}
	for _, c := range res.Ubus {
		if c.Object == "dpf" && c.Method == "delete" {
			t.Errorf("a read-only login's page called dpf delete %s", c.Args)
		}
	}
	if d := h.callsOf("delete"); len(d) != 1 {
		t.Errorf("dpf delete calls after the read-only login: %q, want only the first", d)
	}
	if ls := r.leases(); len(ls) != 1 {
		t.Errorf("dpfd's leases after the read-only login: %+v, want udp/%d still", ls, udpPort)
	}
	r.mustReach("udp", udpPort)

	// dpfd stopped: the page says so instead of showing stale data.
	r.kill(syscall.SIGTERM)
	res = b.run(t, "--url", h.url("dpf/status", "operator"), "--expect-error",
		"--shot", filepath.Join(shots, "luci-status-stopped.png"))
	if !strings.Contains(res.Before.Error, "dpfd is not running") || len(res.Before.Rows) != 0 {
		t.Errorf("with dpfd stopped the page shows error %q and rows %+v; want \"dpfd is not running\" and none", res.Before.Error, res.Before.Rows)
	}
}

// TestLuCISettingsOptions: every option the settings form writes is one
// dpfd's configuration parser knows (it refuses unknown options), and every
// option of the shipped configuration file can be edited in the form.
func TestLuCISettingsOptions(t *testing.T) {
	root := repoRoot(t)
	src, err := os.ReadFile(filepath.Join(root, "luci/htdocs/luci-static/resources/view/dpf/settings.js"))
	if err != nil {
		t.Fatal(err)
	}
	// The rule grid starts at its section declaration; options before it
	// belong to the main section. The client key grid follows the rules.
	js := string(src)
	split := strings.Index(js, "form.GridSection, 'rule'")
	if split < 0 {
		t.Fatal("settings.js has no GridSection for rule sections")
	}
	keySplit := strings.Index(js, "form.GridSection, 'key'")
	if keySplit < split {
		t.Fatal("settings.js has no GridSection for key sections after the rules")
	}
	optRE := regexp.MustCompile(`\.(?:tab)?option\((?:'\w+',\s*)?form\.\w+,\s*'(\w+)'`)
	names := func(s string) []string {
		var out []string
		for _, m := range optRE.FindAllStringSubmatch(s, -1) {
			out = append(out, m[1])
		}
		return out
	}
	formMain, formRule, formKey := names(js[:split]), names(js[split:keySplit]), names(js[keySplit:])
	if len(formMain) < 10 || len(formRule) < 5 || len(formKey) < 2 {
		t.Fatalf("found only %v, %v and %v in settings.js", formMain, formRule, formKey)
	}

	// Known to the parser: it does not call the option unknown.
	for _, n := range formMain {
		if msg := configError(t, fmt.Sprintf("\toption %s 'x'\n", n), ""); strings.Contains(msg, "unknown option") {
			t.Errorf("settings.js writes option %s of config dpf, which dpfd rejects: %s", n, msg)
		}
	}
	for _, n := range formRule {
		if msg := configError(t, "", fmt.Sprintf("config rule\n\toption action 'allow'\n\toption %s 'x'\n", n)); strings.Contains(msg, "unknown option") {
			t.Errorf("settings.js writes option %s of config rule, which dpfd rejects: %s", n, msg)
		}
	}
	for _, n := range formKey {
		key := "config key 'k'\n\toption secret '" + strings.Repeat("ab", 32) + "'\n"
		if msg := configError(t, "", fmt.Sprintf("%s\toption %s 'x'\n", key, n)); strings.Contains(msg, "unknown option") {
			t.Errorf("settings.js writes option %s of config key, which dpfd rejects: %s", n, msg)
		}
	}

	// Editable: every option of the shipped file.
	fh, err := os.Open(filepath.Join(root, "files/etc/config/dpf"))
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	f, err := config.Parse(fh, "files/etc/config/dpf")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range f.Sections {
		form := formMain
		switch s.Type {
		case config.SectionRule:
			form = formRule
		case config.SectionKey:
			form = formKey
		}
		for _, o := range s.Options {
			if !slices.Contains(form, o.Name) {
				t.Errorf("option %s of config %s (files/etc/config/dpf) cannot be edited in settings.js", o.Name, s.Type)
			}
		}
	}
}

// TestLuCICounterLabels: the Status page has a translatable label for
// every counter dpfd reports (control.CounterNames, which the daemon's
// TestStatusCounterNames holds to the keys it sends) and for no other, each
// label its own and in the translation template.
func TestLuCICounterLabels(t *testing.T) {
	root := repoRoot(t)
	labels := viewCounterLabels(t, root)
	pot := potMsgids(t, filepath.Join(root, "luci/po/templates/dpf.pot"))
	byLabel := map[string]string{}
	for name, label := range labels {
		switch {
		case !slices.Contains(control.CounterNames, name):
			t.Errorf("status.js labels counter %q, which dpfd does not report (control.CounterNames: %q)", name, control.CounterNames)
		case label == "" || label == name:
			t.Errorf("status.js labels counter %s %q", name, label)
		case byLabel[label] != "":
			t.Errorf("counters %s and %s share the label %q", byLabel[label], name, label)
		case !pot[label]:
			t.Errorf("label %q of counter %s is not in luci/po/templates/dpf.pot (node luci/test/pot.mjs --write)", label, name)
		}
		byLabel[label] = name
	}
	for _, name := range control.CounterNames {
		if _, ok := labels[name]; !ok {
			t.Errorf("dpfd reports counter %s, which status.js's counterLabels does not label", name)
		}
	}
}

// counterEntryRE is one entry of status.js's counterLabels: [ 'name', _('label') ].
var counterEntryRE = regexp.MustCompile(`^\[\s*'([a-z0-9_]+)',\s*_\('((?:[^'\\]|\\.)*)'\)\s*\],?$`)

// viewCounterLabels reads the counter labels of the Status view: name to
// label, failing on an entry it cannot read or a name labelled twice.
func viewCounterLabels(t *testing.T, root string) map[string]string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(root, "luci/htdocs/luci-static/resources/view/dpf/status.js"))
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(src), "\nvar counterLabels = [\n")
	block, _, ok2 := strings.Cut(rest, "\n];")
	if !ok || !ok2 {
		t.Fatal("status.js has no \"var counterLabels = [ ... ];\" block")
	}
	labels := map[string]string{}
	for _, line := range strings.Split(block, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		m := counterEntryRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("status.js counterLabels: cannot read %q (want [ 'name', _('label') ])", line)
		}
		if _, dup := labels[m[1]]; dup {
			t.Errorf("status.js labels counter %s twice", m[1])
		}
		labels[m[1]] = strings.ReplaceAll(m[2], `\'`, "'")
	}
	return labels
}

// potMsgids returns the msgids of a gettext template.
func potMsgids(t *testing.T, name string) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	var id strings.Builder
	in := false
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case strings.HasPrefix(line, "msgid "):
			in = true
			id.Reset()
			line = strings.TrimPrefix(line, "msgid ")
		case in && strings.HasPrefix(line, `"`):
		default:
			if in {
				ids[id.String()] = true
			}
			in = false
			continue
		}
		s, err := strconv.Unquote(line)
		if err != nil {
			t.Fatalf("%s: %q: %v", name, line, err)
		}
		id.WriteString(s)
	}
	return ids
}

// deletes reports whether the arguments of a dpf delete call select the
// lease proto/port.
func deletes(args, proto string, port uint16) bool {
	var a struct {
		Proto   string `json:"proto"`
		ExtPort uint16 `json:"ext_port"`
		Client  string `json:"client"`
	}
	return json.Unmarshal([]byte(args), &a) == nil && a.Proto == proto && a.ExtPort == port && a.Client == ""
}

// configError parses a minimal valid configuration with extraMain added to
// its main section and rules appended, and returns the error's text ("" if
// none).
func configError(t *testing.T, extraMain, rules string) string {
	t.Helper()
	text := "config dpf 'main'\n\tlist lan_interface 'br-lan'\n\toption wan_interface 'wan'\n" + extraMain + rules
	f, err := config.Parse(strings.NewReader(text), "test")
	if err != nil {
		return err.Error()
	}
	if _, err := config.FromFile(f); err != nil {
		return err.Error()
	}
	return ""
}

// TestLuCITranslationTemplate: luci/po/templates/dpf.pot holds exactly the
// strings the app translates, and each view compiles as LuCI compiles it.
func TestLuCITranslationTemplate(t *testing.T) {
	node := needNode(t)
	root := repoRoot(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, node, filepath.Join(root, "luci/test/pot.mjs"), "--check").CombinedOutput()
	if err != nil {
		t.Fatalf("luci/test/pot.mjs --check: %v\n%s", err, out)
	}
}

// repoRoot is the directory holding go.mod.
func repoRoot(t *testing.T) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod above the working directory")
		}
		dir = parent
	}
}

// artifactsDir returns (and makes) the directory for screenshots.
func artifactsDir(t *testing.T) string {
	t.Helper()
	dir := os.Getenv(artifactsEnv)
	if dir == "" {
		dir = "test-artifacts"
	}
	if !filepath.IsAbs(dir) {
		dir = filepath.Join(repoRoot(t), dir)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// needNode returns node's path. Without node the test fails where
// DPF_REQUIRE_ROOT_TESTS=1 (make test, CI) and is skipped elsewhere.
func needNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err == nil {
		return node
	}
	if os.Getenv(testenv.RequireRootEnv) == "1" {
		t.Fatalf("node is not installed (make test installs it): %v", err)
	}
	t.Skipf("skipping: node is not installed (make test installs it): %v", err)
	return ""
}

// browser runs luci/test/run.mjs.
type browser struct {
	node, script string
}

// needBrowser checks for node, Chromium and playwright-core.
func needBrowser(t *testing.T) *browser {
	t.Helper()
	node := needNode(t)
	root := repoRoot(t)
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed (Debian package chromium; make test installs it): %v", err)
	}
	if _, err := os.Stat(filepath.Join(root, "luci/test/node_modules/playwright-core/package.json")); err != nil {
		t.Fatalf("playwright-core is not installed: run npm ci in luci/test (make test does): %v", err)
	}
	return &browser{node: node, script: filepath.Join(root, "luci/test/run.mjs")}
}

// pageRow is one lease row as run.mjs reports it.
type pageRow struct {
	Key         string `json:"key"`
	Client      string `json:"client"`
	Internal    string `json:"internal"`
	ExtPort     string `json:"ext_port"`
	Proto       string `json:"proto"`
	Description string `json:"description"`
	TimeLeft    string `json:"time_left"`
	// Delete is the state of the row's Delete button: "enabled",
	// "disabled" or "none".
	Delete string `json:"delete"`
}

// pageState is what the status view showed at one moment.
type pageState struct {
	Title         string            `json:"title"`
	Tabs          []string          `json:"tabs"`
	Status        map[string]string `json:"status"`
	Counters      map[string]string `json:"counters"`
	CounterLabels map[string]string `json:"counterLabels"` // label of each counter shown
	Rows          []pageRow         `json:"rows"`
	Error         string            `json:"error"`
	ReadOnly      string            `json:"readonly"` // the notice to a login that may not delete
	Notifications []string          `json:"notifications"`
}

// ubusCall is one JSON-RPC call the page made.
type ubusCall struct {
	Object, Method string
	Args           json.RawMessage
}

// UnmarshalJSON reads run.mjs's [object, method, args].
func (c *ubusCall) UnmarshalJSON(b []byte) error {
	var a []json.RawMessage
	if err := json.Unmarshal(b, &a); err != nil {
		return err
	}
	if len(a) != 3 {
		return fmt.Errorf("ubus call %s: want [object, method, args]", b)
	}
	c.Args = a[2]
	if err := json.Unmarshal(a[0], &c.Object); err != nil {
		return err
	}
	return json.Unmarshal(a[1], &c.Method)
}

// browserResult is run.mjs's output.
type browserResult struct {
	OK           bool       `json:"ok"`
	Failure      string     `json:"failure"`
	Errors       []string   `json:"errors"`
	Blocked      []string   `json:"blocked"`
	Before       pageState  `json:"before"`
	After        pageState  `json:"after"`
	AtFailure    *pageState `json:"atFailure"`
	Countdown    []string   `json:"countdown"`
	DeleteMillis int64      `json:"deleteMillis"`
	Tried        bool       `json:"tried"` // --try-delete found the button and clicked it
	Ubus         []ubusCall `json:"ubus"`
}

// run runs run.mjs with args and returns its result; it fails t when the
// run failed, the page threw or logged errors, asked for anything but
// 127.0.0.1, or showed a notification.
func (b *browser) run(t *testing.T, args ...string) *browserResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), browserRunTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, b.node, append([]string{b.script}, args...)...)
	// node and the Chromium it starts share a process group, so a
	// timeout ends them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	runErr := cmd.Run()
	var res browserResult
	if err := json.Unmarshal(stdout.Bytes(), &res); err != nil {
		t.Fatalf("run.mjs: %v (output not JSON: %v)\nstdout:\n%s\nstderr:\n%s", runErr, err, stdout.String(), stderr.String())
	}
	if runErr != nil || !res.OK {
		t.Fatalf("run.mjs failed: %v: %s\npage at failure: %+v\npage errors: %q\nstderr:\n%s", runErr, res.Failure, res.AtFailure, res.Errors, stderr.String())
	}
	if len(res.Errors) > 0 || len(res.Blocked) > 0 {
		t.Errorf("page errors %q; requests to other hosts %q", res.Errors, res.Blocked)
	}
	if n := append(res.Before.Notifications, res.After.Notifications...); len(n) > 0 {
		t.Errorf("page shows notifications: %q", n)
	}
	return &res
}

var countdownRE = regexp.MustCompile(`^(?:(\d+)d )?(\d+)h (\d+)m (\d+)s$`)

// countdownSeconds reads a "time left" cell ("0h 59m 58s", LuCI's %t).
func countdownSeconds(t *testing.T, s string) int {
	t.Helper()
	m := countdownRE.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("time left %q is not like 0h 59m 58s", s)
	}
	n := func(s string) int { v, _ := strconv.Atoi(s); return v }
	return ((n(m[1])*24+n(m[2]))*60+n(m[3]))*60 + n(m[4])
}

// aclFiles are the rpcd ACL files of the two packages, as installed on a
// router with both.
var aclFiles = []string{
	"luci/root/usr/share/rpcd/acl.d/luci-app-dpf.json",
	"files/usr/share/rpcd/acl.d/dpf.json",
}

// luciLogin is a login section of rpcd's configuration (/etc/config/rpcd):
// the ACL groups its sessions may read and write, as fnmatch patterns.
type luciLogin struct {
	read, write []string
}

// luciLogins are the logins the test's pages are opened as.
var luciLogins = map[string]luciLogin{
	// operator may delete: not through luci-app-dpf, which it may only
	// read, but through dpf-write, the dpf package's group for deleting.
	"operator": {read: []string{"luci-app-dpf", "luci-app-dpf-config"}, write: []string{"dpf-write"}},
	// viewer may read everything of dpf and delete nothing.
	"viewer": {read: []string{"luci-app-dpf", "luci-app-dpf-config", "dpf-*"}},
}

// ubusGrant is what one session may call: method patterns by object
// pattern (rpcd's ubus scope).
type ubusGrant map[string][]string

// allows reports whether the grant covers object's method, matched as
// rpcd matches its ACL entries.
func (g ubusGrant) allows(object, method string) bool {
	for op, mps := range g {
		if ok, _ := path.Match(op, object); !ok {
			continue
		}
		for _, mp := range mps {
			if ok, _ := path.Match(mp, method); ok {
				return true
			}
		}
	}
	return false
}

// luciHarness is the test's web server: uhttpd and rpcd for the page.
type luciHarness struct {
	t    *testing.T
	r    *router
	base string
	root string
	// sessions holds what each session may call, by session ID; sids
	// the session ID of each of luciLogins.
	sessions map[string]ubusGrant
	sids     map[string]string
	// signature is "dpfd rpcd list": the methods of object dpf.
	signature map[string]map[string]any

	mu    sync.Mutex
	calls []string // "method args" of each dpf call
}

// startLuCIHarness serves the app on 127.0.0.1 until the test ends.
func startLuCIHarness(t *testing.T, r *router) *luciHarness {
	t.Helper()
	root := repoRoot(t)
	h := &luciHarness{t: t, r: r, root: root, sessions: map[string]ubusGrant{}, sids: map[string]string{}}

	// A session gets, as rpcd's session login sets it up, the ubus
	// entries of every ACL group whose read or write part its login
	// allows.
	type aclPart struct {
		Ubus map[string][]string `json:"ubus"`
	}
	groups := map[string]map[string]aclPart{} // group -> "read"/"write" -> part
	for _, f := range aclFiles {
		var acl map[string]map[string]json.RawMessage
		b, err := os.ReadFile(filepath.Join(root, f))
		if err == nil {
			err = json.Unmarshal(b, &acl)
		}
		if err != nil {
			t.Fatalf("ACL file %s: %v", f, err)
		}
		for group, perms := range acl {
			groups[group] = map[string]aclPart{}
			for _, perm := range []string{"read", "write"} {
				var part aclPart
				if raw, ok := perms[perm]; ok {
					if err := json.Unmarshal(raw, &part); err != nil {
						t.Fatalf("ACL file %s, group %s, %s: %v", f, group, perm, err)
					}
					groups[group][perm] = part
				}
			}
		}
	}
	for name, login := range luciLogins {
		grant := ubusGrant{}
		for group, parts := range groups {
			for perm, part := range parts {
				if !login.allows(perm, group) {
					continue
				}
				for obj, methods := range part.Ubus {
					grant[obj] = append(grant[obj], methods...)
				}
			}
		}
		sid := randomSessionID(t)
		h.sessions[sid], h.sids[name] = grant, sid
	}

	// rpcd asks a plugin for its methods once, when it starts.
	out, err := r.lab.Output(rpcdCallTimeout, r.lab.Router, dpfdBin, "rpcd", "list", "-c", r.cfgPath)
	if err != nil {
		t.Fatalf("dpfd rpcd list: %v\n%s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &h.signature); err != nil {
		t.Fatalf("dpfd rpcd list printed %q: %v", out, err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /luci-static/resources/", http.StripPrefix("/luci-static/resources/",
		http.FileServer(http.Dir(filepath.Join(root, "luci/htdocs/luci-static/resources")))))
	mux.Handle("GET /harness/", http.StripPrefix("/harness/",
		http.FileServer(http.Dir(filepath.Join(root, "luci/test/harness")))))
	mux.Handle("GET /menu.d/", http.StripPrefix("/menu.d/",
		http.FileServer(http.Dir(filepath.Join(root, "luci/root/usr/share/luci/menu.d")))))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, req *http.Request) {
		http.ServeFile(w, req, filepath.Join(root, "luci/test/harness/index.html"))
	})
	mux.HandleFunc("POST /ubus/", h.ubus)

	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	h.base = "http://" + ln.Addr().String()
	return h
}

// allows reports whether the login may have perm ("read" or "write") of
// an ACL group, as rpcd decides it: write implies read.
func (l luciLogin) allows(perm, group string) bool {
	patterns := l.write
	if perm == "read" {
		patterns = append(slices.Clone(l.read), l.write...)
	}
	for _, p := range patterns {
		if ok, _ := path.Match(p, group); ok {
			return true
		}
	}
	return false
}

// randomSessionID returns a session ID as rpcd makes them: 32 hex digits.
func randomSessionID(t *testing.T) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// url is the address of a view opened by a session of login.
func (h *luciHarness) url(view, login string) string {
	sid, ok := h.sids[login]
	if !ok {
		h.t.Fatalf("no login %q", login)
	}
	return h.base + "/?view=" + view + "&session=" + sid
}

// callError makes one ubus call as a session of login, as the page would,
// and returns its JSON-RPC error code (0: none).
func (h *luciHarness) callError(login, object, method, args string) int {
	h.t.Helper()
	body := fmt.Sprintf(`{"jsonrpc":"2.0","id":1,"method":"call","params":[%q,%q,%q,%s]}`, h.sids[login], object, method, args)
	client := &http.Client{Timeout: rpcdCallTimeout}
	resp, err := client.Post(h.base+"/ubus/", "application/json", strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	var reply struct {
		Error *struct {
			Code int `json:"code"`
		} `json:"error"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&reply); err != nil {
		h.t.Fatalf("ubus reply: %v", err)
	}
	if reply.Error == nil {
		return 0
	}
	return reply.Error.Code
}

// callsOf returns the arguments of the dpf calls of one method, in order.
func (h *luciHarness) callsOf(method string) []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, c := range h.calls {
		if m, args, _ := strings.Cut(c, " "); m == method {
			out = append(out, args)
		}
	}
	return out
}

// JSON-RPC error codes of uhttpd's ubus handler.
const (
	jsonrpcParseError     = -32700
	jsonrpcInvalidRequest = -32600
	jsonrpcMethodNotFound = -32601
	jsonrpcObjectNotFound = -32000
	jsonrpcAccessDenied   = -32002
)

// ubus status codes (libubus).
const (
	ubusOK              = 0
	ubusInvalidArgument = 2
	ubusMethodNotFound  = 3
	ubusNoData          = 5
)

// ubus answers one JSON-RPC request as uhttpd and rpcd would.
func (h *luciHarness) ubus(w http.ResponseWriter, req *http.Request) {
	var msg struct {
		ID     json.RawMessage   `json:"id"`
		Method string            `json:"method"`
		Params []json.RawMessage `json:"params"`
	}
	reply := func(body map[string]any) {
		body["jsonrpc"] = "2.0"
		body["id"] = msg.ID
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(body)
	}
	fail := func(code int, text string) {
		reply(map[string]any{"error": map[string]any{"code": code, "message": text}})
	}
	if err := json.NewDecoder(http.MaxBytesReader(w, req.Body, 64<<10)).Decode(&msg); err != nil {
		fail(jsonrpcParseError, "Parse error")
		return
	}
	if msg.Method != "call" {
		fail(jsonrpcMethodNotFound, "Method not found")
		return
	}
	var object, method string
	if len(msg.Params) != 4 || json.Unmarshal(msg.Params[1], &object) != nil || json.Unmarshal(msg.Params[2], &method) != nil {
		fail(jsonrpcInvalidRequest, "Invalid request")
		return
	}
	var sid string
	if json.Unmarshal(msg.Params[0], &sid) != nil {
		fail(jsonrpcInvalidRequest, "Invalid request")
		return
	}
	args := msg.Params[3]
	// uhttpd asks rpcd whether the session may make the call; an unknown
	// session may make none.
	grant, ok := h.sessions[sid]
	if !ok || !grant.allows(object, method) {
		fail(jsonrpcAccessDenied, "Access denied")
		return
	}
	switch object {
	case "session":
		// rpcd's "session" "access" for the caller's own session
		// (uhttpd adds it), in the ubus scope. Without object and
		// function rpcd lists the session's ACL, which no view here
		// asks for.
		var a struct {
			Scope    string `json:"scope"`
			Object   string `json:"object"`
			Function string `json:"function"`
		}
		if method != "access" {
			reply(map[string]any{"result": []any{ubusMethodNotFound}})
			return
		}
		if json.Unmarshal(args, &a) != nil || a.Object == "" || a.Function == "" {
			reply(map[string]any{"result": []any{ubusInvalidArgument}})
			return
		}
		allowed := (a.Scope == "" || a.Scope == "ubus") && grant.allows(a.Object, a.Function)
		reply(map[string]any{"result": []any{ubusOK, map[string]any{"access": allowed}}})
	case "dpf":
		status, data := h.callDPF(method, args)
		if data == nil {
			reply(map[string]any{"result": []any{status}})
		} else {
			reply(map[string]any{"result": []any{status, data}})
		}
	case "luci-rpc":
		// LuCI's own object, not DPF's: a fixed DHCP lease names the
		// LAN host, as on a router whose DHCP server gave it out.
		if method != "getDHCPLeases" {
			reply(map[string]any{"result": []any{ubusMethodNotFound}})
			return
		}
		reply(map[string]any{"result": []any{ubusOK, map[string]any{"dhcp_leases": []map[string]any{
			{"hostname": "media-server", "ipaddr": lab.LANHost(0).String(), "macaddr": "02:00:00:00:00:02", "expires": 43200},
		}}}})
	default:
		fail(jsonrpcObjectNotFound, "Object not found")
	}
}

// callDPF runs "dpfd rpcd call METHOD" in the router namespace with args on
// stdin and turns its output into a ubus status and reply as rpcd's exec
// plugin support does: one JSON object is the reply, no output is
// NO_DATA, anything else INVALID_ARGUMENT.
func (h *luciHarness) callDPF(method string, args json.RawMessage) (int, json.RawMessage) {
	h.mu.Lock()
	h.calls = append(h.calls, method+" "+string(args))
	h.mu.Unlock()
	if _, ok := h.signature[method]; !ok {
		return ubusMethodNotFound, nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), rpcdCallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", "netns", "exec", h.r.lab.Router, dpfdBin, "rpcd", "call", method, "-c", h.r.cfgPath)
	cmd.Stdin = bytes.NewReader(args)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		h.t.Logf("dpfd rpcd call %s: %v\n%s", method, err, stderr.String())
	}
	out = bytes.TrimSpace(out)
	if len(out) == 0 {
		return ubusNoData, nil
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(out, &obj); err != nil {
		h.t.Logf("dpfd rpcd call %s printed something other than a JSON object: %q", method, out)
		return ubusInvalidArgument, nil
	}
	return ubusOK, out
}
