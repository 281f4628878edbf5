package main

// The OpenWrt init script, files/etc/init.d/dpf, run by sh with stand-ins
// for what OpenWrt provides and Debian does not: rc.common and procd.sh
// (testdata/initscript/rc.common), network.sh (testdata/initscript/
// network.sh), the uci command (uciStandIn below, on the configuration
// package's UCI parser and writer), logger (records), a running dpfd
// (fakeDaemonMain: answers the control API as told) and dpfd cleanup
// (records; the real one would change this machine's firewall). Every
// other dpfd command is the real command line: this test binary run as
// dpfd.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
)

// roleEnv makes the test binary act as a program the init script runs.
const roleEnv = "DPFD_TEST_ROLE"

func TestMain(m *testing.M) {
	switch os.Getenv(roleEnv) {
	case "dpfd":
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	case "uci":
		os.Exit(uciStandIn(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	case "daemon":
		os.Exit(fakeDaemonMain())
	}
	os.Exit(m.Run())
}

// uciStandIn stands in for OpenWrt's uci command line (package uci),
// reduced to what the init script uses:
//
//	uci [-q] [-c CONFDIR] [-t SAVEDIR] get PACKAGE.SECTION[.OPTION]
//	uci [-q] [-c CONFDIR] [-t SAVEDIR] batch
//
// SECTION is a section name or @TYPE[N]. get prints a section's type, an
// option's value or a list's values separated by spaces, and exits 1 when
// there is none (silently with -q). batch reads commands from stdin: set
// P.S.O=VALUE, delete P.S.O, add_list P.S.O=VALUE (which turns an option
// into a list, as uci does) and commit P, which writes CONFDIR/P.
// CONFDIR defaults to $STANDIN_UCI_CONFDIR, standing for /etc/config;
// SAVEDIR (where the real uci keeps uncommitted changes) is not used.
func uciStandIn(args []string, stdin *os.File, stdout, stderr *os.File) int {
	confdir, quiet := os.Getenv("STANDIN_UCI_CONFDIR"), false
	for len(args) > 0 && strings.HasPrefix(args[0], "-") {
		switch args[0] {
		case "-q":
			quiet = true
		case "-c", "-t":
			if len(args) < 2 {
				return 1
			}
			if args[0] == "-c" {
				confdir = args[1]
			}
			args = args[1:]
		default:
			fmt.Fprintln(stderr, "uci stand-in: unsupported flag", args[0])
			return 1
		}
		args = args[1:]
	}
	fail := func(format string, a ...any) int {
		if !quiet {
			fmt.Fprintf(stderr, "uci: "+format+"\n", a...)
		}
		return 1
	}
	u := &uciState{dir: confdir, files: map[string]*config.File{}}
	switch {
	case len(args) == 2 && args[0] == "get":
		v, err := u.get(args[1])
		if err != nil {
			return fail("%v", err)
		}
		fmt.Fprintln(stdout, v)
		return 0
	case len(args) == 1 && args[0] == "batch":
		sc := bufio.NewScanner(stdin)
		for sc.Scan() {
			if err := u.command(strings.TrimSpace(sc.Text())); err != nil {
				return fail("%v", err)
			}
		}
		return 0
	}
	return fail("stand-in: unsupported command %q", args)
}

type uciState struct {
	dir   string
	files map[string]*config.File
}

// load returns package pkg.
func (u *uciState) load(pkg string) (*config.File, error) {
	if f := u.files[pkg]; f != nil {
		return f, nil
	}
	fh, err := os.Open(filepath.Join(u.dir, pkg))
	if err != nil {
		return nil, errors.New("Entry not found")
	}
	defer fh.Close()
	f, err := config.Parse(fh, pkg)
	if err != nil {
		return nil, err
	}
	u.files[pkg] = f
	return f, nil
}

var uciSectionRE = regexp.MustCompile(`^@([A-Za-z0-9_]+)\[(\d+)\]$`)

// lookup resolves PACKAGE.SECTION[.OPTION].
func (u *uciState) lookup(path string) (*config.File, *config.Section, string, error) {
	parts := strings.Split(path, ".")
	if len(parts) < 2 || len(parts) > 3 {
		return nil, nil, "", fmt.Errorf("invalid path %q", path)
	}
	f, err := u.load(parts[0])
	if err != nil {
		return nil, nil, "", err
	}
	var s *config.Section
	if m := uciSectionRE.FindStringSubmatch(parts[1]); m != nil {
		n, _ := strconv.Atoi(m[2])
		for i := range f.Sections {
			if f.Sections[i].Type == m[1] {
				if n == 0 {
					s = &f.Sections[i]
					break
				}
				n--
			}
		}
	} else {
		for i := range f.Sections {
			if f.Sections[i].Name == parts[1] {
				s = &f.Sections[i]
			}
		}
	}
	if s == nil {
		return nil, nil, "", errors.New("Entry not found")
	}
	opt := ""
	if len(parts) == 3 {
		opt = parts[2]
	}
	return f, s, opt, nil
}

func (u *uciState) get(path string) (string, error) {
	_, s, opt, err := u.lookup(path)
	if err != nil {
		return "", err
	}
	if opt == "" {
		return s.Type, nil
	}
	o := s.Lookup(opt)
	if o == nil {
		return "", errors.New("Entry not found")
	}
	return strings.Join(o.Values, " "), nil
}

func (u *uciState) command(line string) error {
	if line == "" {
		return nil
	}
	cmd, arg, _ := strings.Cut(line, " ")
	if cmd == "commit" {
		f := u.files[arg]
		if f == nil {
			return nil
		}
		var b strings.Builder
		if _, err := f.WriteTo(&b); err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(u.dir, arg), []byte(b.String()), 0o600)
	}
	path, value, hasValue := strings.Cut(arg, "=")
	_, s, opt, err := u.lookup(path)
	if err != nil || opt == "" {
		return fmt.Errorf("%s %s: %v", cmd, arg, err)
	}
	switch {
	case cmd == "set" && hasValue:
		if o := s.Lookup(opt); o != nil {
			o.Values, o.IsList = []string{value}, false
		} else {
			s.Options = append(s.Options, config.Option{Name: opt, Values: []string{value}})
		}
	case cmd == "add_list" && hasValue:
		if o := s.Lookup(opt); o != nil {
			o.Values, o.IsList = append(o.Values, value), true
		} else {
			s.Options = append(s.Options, config.Option{Name: opt, Values: []string{value}, IsList: true})
		}
	case cmd == "delete" && !hasValue:
		s.Options = slices.DeleteFunc(s.Options, func(o config.Option) bool { return o.Name == opt })
	default:
		return fmt.Errorf("stand-in: unsupported batch command %q", line)
	}
	return nil
}

// fakeDaemonMain stands in for a running dpfd: it serves the control API
// on $STANDIN_SOCKET until SIGTERM, answering status, and reload with
// $STANDIN_RELOAD (a control.ReloadResult in JSON), and appends each
// method called to $STANDIN_CALLS.
func fakeDaemonMain() int {
	var answer control.ReloadResult
	if err := json.Unmarshal([]byte(os.Getenv("STANDIN_RELOAD")), &answer); err != nil {
		fmt.Fprintln(os.Stderr, "fake daemon:", err)
		return 1
	}
	ln, err := control.Listen(os.Getenv("STANDIN_SOCKET"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "fake daemon:", err)
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	ln.Serve(ctx, func(_ context.Context, method string, _ json.RawMessage) (any, error) {
		if f, err := os.OpenFile(os.Getenv("STANDIN_CALLS"), os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o600); err == nil {
			fmt.Fprintln(f, method)
			f.Close()
		}
		switch method {
		case control.MethodStatus:
			return control.Status{Version: "stand-in"}, nil
		case control.MethodReload:
			return answer, nil
		}
		return nil, fmt.Errorf("unknown method %q", method)
	}, nil)
	return 0
}

// initRig is a root directory standing for an OpenWrt system's: the init
// script (its absolute paths moved under the root), the stand-ins, and
// /etc/config/dpf and /etc/config/network.
type initRig struct {
	t      *testing.T
	root   string
	log    string // what the stand-ins recorded, one line each
	calls  string // the control methods the stand-in daemon answered
	socket string
	daemon *exec.Cmd
	exited chan struct{}
	env    []string
}

// initPaths are the script's absolute paths that the rig moves under its
// root.
var initPaths = []string{"/usr/sbin/dpfd", "/etc/config/dpf", "/var/etc/dpf", "/lib/functions/network.sh"}

func newInitRig(t *testing.T) *initRig {
	t.Helper()
	root := t.TempDir()
	r := &initRig{t: t, root: root, log: filepath.Join(root, "standin.log"), calls: filepath.Join(root, "calls"),
		socket: filepath.Join(root, "run", "dpfd.sock")}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"bin", "usr/sbin", "etc/config", "etc/init.d", "var/etc", "lib/functions", "run", "netifd"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script, err := os.ReadFile("../../../files/etc/init.d/dpf")
	if err != nil {
		t.Fatal(err)
	}
	s := string(script)
	for _, p := range initPaths {
		if !strings.Contains(s, p) {
			t.Fatalf("the init script no longer uses %s; update the rig", p)
		}
		s = strings.ReplaceAll(s, p, root+p)
	}
	for _, l := range strings.Split(s, "\n") {
		if m := regexp.MustCompile(`(^|[\s"'=])(/(?:usr|etc|var|lib|tmp)/[^\s"']*)`).FindStringSubmatch(l); m != nil &&
			!strings.HasPrefix(m[2], root) && !strings.HasPrefix(strings.TrimSpace(l), "#") {
			t.Fatalf("the init script uses %s, which the rig does not move: %s", m[2], l)
		}
	}
	files := map[string]string{
		"etc/init.d/dpf": s,
		"usr/sbin/dpfd": `#!/bin/sh
# Stand-in for /usr/sbin/dpfd: the real command line (the test binary),
# except cleanup, which would change this machine's firewall: recorded,
# with the socket of the configuration it is given.
if [ "$1" = cleanup ]; then
	echo "dpfd cleanup $(grep "option socket" "$3" | tr -d '\t')" >>"$STANDIN_LOG"
	exit 0
fi
` + roleEnv + `=dpfd exec "` + self + `" "$@"
`,
		"bin/uci": "#!/bin/sh\n" + roleEnv + `=uci exec "` + self + `" "$@"` + "\n",
		"bin/logger": `#!/bin/sh
# Stand-in for logger (busybox): records its arguments.
echo "logger $*" >>"$STANDIN_LOG"
`,
	}
	for name, text := range files {
		if err := os.WriteFile(filepath.Join(root, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"rc.common", "network.sh"} {
		b, err := os.ReadFile(filepath.Join("testdata", "initscript", name))
		if err != nil {
			t.Fatal(err)
		}
		dst := filepath.Join(root, "etc", name)
		if name == "network.sh" {
			dst = filepath.Join(root, "lib", "functions", name)
		}
		if err := os.WriteFile(dst, b, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	r.env = append(os.Environ(),
		"PATH="+filepath.Join(root, "bin")+":"+os.Getenv("PATH"),
		"STANDIN_LOG="+r.log,
		"STANDIN_UCI_CONFDIR="+filepath.Join(root, "etc", "config"),
		"STANDIN_NETIFD="+filepath.Join(root, "netifd"),
		"STANDIN_DAEMON_PID="+filepath.Join(root, "daemon.pid"),
	)
	r.writeNetwork(nil)
	t.Cleanup(r.stopDaemon)
	return r
}

// writeConfig writes /etc/config/dpf: the main section with lan and wan
// (which may be network names) and the extra lines, socket and db under
// the root.
func (r *initRig) writeConfig(lan, wan, extra string) {
	r.t.Helper()
	text := fmt.Sprintf("config dpf 'main'\n\tlist lan_interface '%s'\n\toption wan_interface '%s'\n\toption socket '%s'\n\toption db '%s'\n%s",
		lan, wan, r.socket, filepath.Join(r.root, "leases.db"), extra)
	if err := os.WriteFile(filepath.Join(r.root, "etc", "config", "dpf"), []byte(text), 0o600); err != nil {
		r.t.Fatal(err)
	}
}

// writeNetwork writes /etc/config/network with an interface section per
// network (name: device) and what netifd reports for each that is up.
func (r *initRig) writeNetwork(up map[string]string) {
	r.t.Helper()
	var b strings.Builder
	for name, dev := range up {
		fmt.Fprintf(&b, "config interface '%s'\n\toption device '%s'\n\toption proto 'dhcp'\n", name, dev)
		if err := os.WriteFile(filepath.Join(r.root, "netifd", name+".l3_device"), []byte(dev+"\n"), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(r.root, "etc", "config", "network"), []byte(b.String()), 0o644); err != nil {
		r.t.Fatal(err)
	}
}

// action runs "/etc/init.d/dpf ACTION" as the shebang line has it run:
// rc.common with the script and the action (bounded). It returns the log
// lines the stand-ins recorded meanwhile.
func (r *initRig) action(action string) []string {
	r.t.Helper()
	os.Remove(r.log)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", filepath.Join(r.root, "etc", "rc.common"), filepath.Join(r.root, "etc", "init.d", "dpf"), action)
	cmd.Env = r.env
	out, err := cmd.CombinedOutput() // exit 1 when the script refuses the file
	if ctx.Err() != nil {
		r.t.Fatalf("/etc/init.d/dpf %s did not finish: %v\n%s", action, err, out)
	}
	b, _ := os.ReadFile(r.log)
	r.t.Logf("/etc/init.d/dpf %s (%v):\n%s%s", action, err, out, b)
	return strings.Split(strings.TrimSpace(string(b)), "\n")
}

// startDaemon starts the stand-in dpfd, as procd would after start,
// answering reload with answer.
func (r *initRig) startDaemon(answer control.ReloadResult) {
	r.t.Helper()
	r.stopDaemon()
	self, _ := os.Executable()
	js, _ := json.Marshal(answer)
	cmd := exec.Command(self)
	cmd.Env = append(r.env, roleEnv+"=daemon", "STANDIN_SOCKET="+r.socket, "STANDIN_RELOAD="+string(js), "STANDIN_CALLS="+r.calls)
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	r.daemon, r.exited = cmd, make(chan struct{})
	go func(exited chan struct{}) { cmd.Wait(); close(exited) }(r.exited)
	if err := os.WriteFile(filepath.Join(r.root, "daemon.pid"), []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		r.t.Fatal(err)
	}
	for i := 0; control.Call(r.socket, control.MethodStatus, nil, nil) != nil; i++ {
		if i == 500 {
			r.t.Fatal("the stand-in daemon did not come up within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	os.Remove(r.calls)
}

// stopDaemon stops the stand-in daemon if it runs (procd_kill may have).
func (r *initRig) stopDaemon() {
	if r.daemon == nil {
		return
	}
	r.daemon.Process.Signal(syscall.SIGTERM)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		r.daemon.Process.Kill()
		<-r.exited
	}
	r.daemon = nil
}

// daemonCalls returns the control methods the stand-in daemon answered
// since it started.
func (r *initRig) daemonCalls() []string {
	b, _ := os.ReadFile(r.calls)
	return strings.Fields(string(b))
}

func (r *initRig) runConf() string {
	b, err := os.ReadFile(filepath.Join(r.root, "var", "etc", "dpf", "dpf"))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// commandLine returns the command procd was given, "" if none.
func commandLine(lines []string) string {
	for _, l := range lines {
		if c, ok := strings.CutPrefix(l, "procd_set_param command "); ok {
			return c
		}
	}
	return ""
}

// TestInitScriptStart: start resolves network names to their devices in
// the runtime copy (readable by root only) and has procd run dpfd with
// --syslog, so that each line is logged at its own level, and stderr
// logged; an invalid file starts nothing and names the line.
func TestInitScriptStart(t *testing.T) {
	r := newInitRig(t)
	r.writeNetwork(map[string]string{"lan": "br-lan", "wan": "pppoe-wan"})
	r.writeConfig("lan", "wan", "")
	lines := r.action("start")
	want := filepath.Join(r.root, "usr/sbin/dpfd") + " run -c " + filepath.Join(r.root, "var/etc/dpf/dpf") + " --syslog"
	if got := commandLine(lines); got != want {
		t.Errorf("procd runs %q, want %q", got, want)
	}
	if !slices.Contains(lines, "procd_set_param stderr 1") {
		t.Errorf("procd does not log dpfd's stderr (a crash would leave no trace): %q", lines)
	}
	if slices.Contains(lines, "procd_set_param stdout 1") {
		t.Errorf("procd logs dpfd's stdout, which dpfd run does not write")
	}
	conf := r.runConf()
	if !strings.Contains(conf, "list lan_interface 'br-lan'") || !strings.Contains(conf, "option wan_interface 'pppoe-wan'") {
		t.Errorf("runtime copy does not name the devices:\n%s", conf)
	}
	if fi, err := os.Stat(filepath.Join(r.root, "var/etc/dpf/dpf")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("runtime copy mode %v, %v; want 0600 (it holds the client keys)", fi.Mode().Perm(), err)
	}

	r.writeConfig("lan", "wan", "\toption max_lifetime 'abc'\n")
	lines = r.action("start")
	if commandLine(lines) != "" || !slices.ContainsFunc(lines, func(l string) bool {
		return strings.Contains(l, "daemon.err") && strings.Contains(l, "etc/config/dpf:6: option max_lifetime")
	}) {
		t.Errorf("start with an invalid file: %q", lines)
	}
}

// TestInitScriptReload: reload asks dpfd and restarts exactly when dpfd
// answers that a restart is needed, whatever changed in the file: the
// script keeps no list of its own. A restart stops dpfd with the copy it
// ran with (its socket and backend), then starts it with the new one;
// otherwise the new copy is dpfd's. A dpfd that is not running is
// started; option enabled '0' (which dpfd answers needs a restart) leaves
// none running.
func TestInitScriptReload(t *testing.T) {
	restarted := func(lines []string) bool { return slices.Contains(lines, "restart") }
	r := newInitRig(t)
	r.writeNetwork(map[string]string{"lan": "br-lan"})
	r.writeConfig("lan", "eth1", "")
	r.action("start")

	// dpfd applies the change: a reload, no restart, even for a change
	// that an earlier script restarted for (backend).
	r.startDaemon(control.ReloadResult{OK: true})
	r.writeConfig("lan", "eth1", "\toption backend 'iptables'\n\toption min_lifetime '300'\n")
	lines := r.action("reload")
	if restarted(lines) || slices.Contains(lines, "stop") {
		t.Errorf("restarted although dpfd applied the file: %q", lines)
	}
	if got := r.daemonCalls(); !slices.Equal(got, []string{"status", "reload"}) {
		t.Errorf("dpfd was asked %v, want [status reload]", got)
	}
	if conf := r.runConf(); !strings.Contains(conf, "option min_lifetime '300'") || !strings.Contains(conf, "list lan_interface 'br-lan'") {
		t.Errorf("the runtime copy dpfd reloaded is not the new file:\n%s", conf)
	}
	if _, err := os.Stat(filepath.Join(r.root, "var/etc/dpf/running")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the copy of the running file was left behind: %v", err)
	}

	// dpfd answers that a restart is needed: the script restarts it,
	// even for a change that looks harmless (the decision is dpfd's).
	r.startDaemon(control.ReloadResult{RestartNeeded: []string{"socket"}})
	oldSocket := r.socket
	r.socket = filepath.Join(r.root, "run", "other.sock")
	r.writeConfig("lan", "eth1", "\toption backend 'iptables'\n\toption min_lifetime '600'\n")
	lines = r.action("reload")
	if !restarted(lines) {
		t.Fatalf("no restart although dpfd answered restart needed: %q", lines)
	}
	if got := r.daemonCalls(); !slices.Contains(got, "reload") {
		t.Errorf("dpfd was not asked to reload: %v", got)
	}
	stop, start := slices.Index(lines, "stop"), slices.Index(lines, "start")
	if stop < 0 || start < stop || !slices.Contains(lines[stop:start], "dpfd cleanup option socket '"+oldSocket+"'") {
		t.Errorf("the restart did not stop dpfd, clean up with the running copy, then start: %q", lines)
	}
	if commandLine(lines[max(start, 0):]) == "" {
		t.Errorf("the restart started no dpfd: %q", lines)
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "restart needed: socket") }) {
		t.Errorf("the log does not say why dpfd restarts: %q", lines)
	}
	if conf := r.runConf(); !strings.Contains(conf, "option min_lifetime '600'") {
		t.Errorf("runtime copy after the restart is not the new file:\n%s", conf)
	}

	// Not running: started, nothing asked.
	r.stopDaemon()
	lines = r.action("reload")
	if restarted(lines) || commandLine(lines) == "" {
		t.Errorf("reload without a running dpfd: %q", lines)
	}

	// enabled '0': dpfd answers restart needed; the restart leaves none.
	r.startDaemon(control.ReloadResult{RestartNeeded: []string{"enabled"}})
	r.writeConfig("lan", "eth1", "\toption enabled '0'\n")
	lines = r.action("reload")
	if !restarted(lines) || commandLine(lines) != "" || !slices.Contains(lines, "procd_kill dpf ") {
		t.Errorf("reload to enabled '0': %q", lines)
	}

	// An invalid file is not applied and its line is named.
	r.startDaemon(control.ReloadResult{OK: true})
	r.writeConfig("lan", "eth1", "\toption rate_limit 'fast'\n")
	lines = r.action("reload")
	if restarted(lines) || slices.Contains(r.daemonCalls(), "reload") ||
		!slices.ContainsFunc(lines, func(l string) bool { return strings.Contains(l, "etc/config/dpf:6: option rate_limit") }) {
		t.Errorf("reload of an invalid file: %q, dpfd asked %v", lines, r.daemonCalls())
	}
}
