package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/internal/lab"
)

// Target names a daemon under test.
type Target string

// The targets.
const (
	DpfdNftables      Target = "dpfd-nftables"
	DpfdIptables      Target = "dpfd-iptables"
	MiniupnpdNftables Target = "miniupnpd-nftables"
	MiniupnpdIptables Target = "miniupnpd-iptables"
)

// AllTargets lists every target in report order.
var AllTargets = []Target{DpfdNftables, DpfdIptables, MiniupnpdNftables, MiniupnpdIptables}

// IsDpfd reports whether t is a dpfd target.
func (t Target) IsDpfd() bool { return strings.HasPrefix(string(t), "dpfd") }

// startTimeout bounds a daemon's start.
const startTimeout = 20 * time.Second

// ErrNotUp is returned when a daemon does not come up in time.
var ErrNotUp = errors.New("daemon did not come up")

// daemon is one target running in a lab's router namespace.
type daemon struct {
	target Target
	bin    string // dpfd or miniupnpd binary
	lab    *lab.Lab
	dir    string // configuration, logs, and the database unless dbDir says otherwise
	dbDir  string // dpfd's lease database
	// runDir is miniupnpd's /var/run: a tmpfs mounted for the lab's
	// life, as OpenWrt's /var/run is, holding its lease file.
	runDir string
	// checkpoint is dpfd's checkpoint_interval (shortened for the
	// scaled write pass).
	checkpoint time.Duration
	conf       string   // the configuration file's text
	argv       []string // the command line of the last start
	cmd        *exec.Cmd
	// pid is the daemon's process: cmd's own for dpfd (run in the
	// foreground, as procd runs it), the one miniupnpd wrote to its
	// pid file after it went into the background.
	pid     int
	syslog  *net.UnixConn // the daemon's /dev/log
	slog    *sysLog       // what arrived there
	started time.Time
}

func (d *daemon) confPath() string { return filepath.Join(d.dir, "daemon.conf") }
func (d *daemon) sock() string     { return filepath.Join(d.dir, "dpfd.sock") }
func (d *daemon) pidPath() string  { return filepath.Join(d.dir, "miniupnpd.pid") }

// dpfdConf is dpfd's shipped configuration (files/etc/config/dpf: log
// level info, so every new and deleted mapping is logged) with only what
// the load needs changed: one host holds up to 10,000 mappings and sends
// requests as fast as the daemon answers, so the per-host and total quotas
// and the per-host rate limit are raised. checkpoint_interval is the
// default 300 s except in the scaled write pass.
const dpfdConf = `config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend '%s'
	option db '%s'
	option socket '%s'
	option max_per_host '100000'
	option max_leases '100000'
	option rate_limit '1000000'
	option rate_burst '1000000'
	option checkpoint_interval '%d'
`

// MiniupnpdRuleset is the nftables set-up of Debian's nft_init.sh plus
// masquerade and a forward policy of drop, like a home router, for
// miniupnpd-nftables in the lab's router (the system tests use it too).
const MiniupnpdRuleset = `table inet filter {
	chain forward {
		type filter hook forward priority 0; policy drop;
		ct state established,related accept
		iifname "br-lan" accept
		jump miniupnpd
	}
	chain miniupnpd {
	}
	chain prerouting {
		type nat hook prerouting priority -100; policy accept;
		jump prerouting_miniupnpd
	}
	chain postrouting {
		type nat hook postrouting priority 100; policy accept;
		oifname "wan0" masquerade
		jump postrouting_miniupnpd
	}
	chain prerouting_miniupnpd {
	}
	chain postrouting_miniupnpd {
	}
}
`

// miniupnpdIptables is the legacy iptables set-up of iptables_init.sh
// (miniupnpd's iptables build uses libiptc, which is the legacy interface).
var miniupnpdIptables = [][]string{
	{"-t", "nat", "-N", "MINIUPNPD"},
	{"-t", "nat", "-A", "PREROUTING", "-i", "wan0", "-j", "MINIUPNPD"},
	{"-t", "nat", "-N", "MINIUPNPD-POSTROUTING"},
	{"-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MINIUPNPD-POSTROUTING"},
	{"-t", "nat", "-A", "POSTROUTING", "-o", "wan0", "-j", "MASQUERADE"},
	{"-t", "filter", "-N", "MINIUPNPD"},
	{"-t", "filter", "-P", "FORWARD", "DROP"},
	{"-t", "filter", "-A", "FORWARD", "-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED", "-j", "ACCEPT"},
	{"-t", "filter", "-A", "FORWARD", "-i", "br-lan", "-j", "ACCEPT"},
	{"-t", "filter", "-A", "FORWARD", "-i", "wan0", "!", "-o", "wan0", "-j", "MINIUPNPD"},
}

// miniupnpdConf is what OpenWrt's miniupnpd init script
// (net/miniupnpd/files/miniupnpd.init of openwrt/packages, the version
// for miniupnpd 2.3.x, which Debian ships as 2.3.1) writes to
// /var/etc/miniupnpd.conf for the default /etc/config/upnpd: UPnP IGD
// and NAT-PMP/PCP on, secure mode, IGDv1 descriptions, IPv6 on, the
// default bit rates (1024/512 kB/s) and HTTP port 5000, the lease file on
// tmpfs (/var/run/miniupnpd.leases there; %[1]s here) and the default
// permission rules. One option differs, as it must in this lab: STUN
// (use_stun '1', ImmortalWrt's default), because the lab's WAN address is
// in a documentation range, which miniupnpd takes for a private one and
// then disables port forwarding; it asks the lab's STUN server once at
// start, never per request. The init script's order is kept.
const miniupnpdConf = `ext_ifname=wan0
ext_ifname6=wan0
listening_ip=br-lan
enable_natpmp=yes
enable_upnp=yes
secure_mode=yes
system_uptime=yes
force_igd_desc_v1=yes
ext_perform_stun=yes
ipv6_disable=no
ext_stun_host=203.0.113.2
ext_stun_port=3478
bitrate_down=8388608
bitrate_up=4194304
lease_file=%[1]s
port=5000
uuid=%[2]s
allow 1024-65535 0.0.0.0/0 1024-65535 #Allow high ports
deny 0-65535 0.0.0.0/0 0-65535 #Default deny
`

// miniupnpdUUID is the lab's UPnP device UUID (OpenWrt's init script
// makes a random one once and stores it in /etc/config/upnpd).
const miniupnpdUUID = "3b8ef1f4-2f5b-4d3c-9a51-6c2f0e1d7a90"

// privateDevLog runs "$@" (after the directory argument $1) in a private
// mount namespace whose /dev is a small tmpfs holding the usual character
// devices and, as /dev/log, the harness's syslog socket $1/syslog.sock:
// the system log of a router (OpenWrt's logd keeps it in RAM). Both
// daemons log there, as they do under procd. Without a syslog daemon,
// miniupnpd would write every log line to /dev/console (about 1 ms a
// line). The shells and unshare exec in turn, so the process started is
// the daemon's (dpfd stays in the foreground; miniupnpd forks into the
// background and writes its pid file).
const privateDevLog = `set -e
d=$1; shift
mkdir -p "$d/devsave"
mount --bind /dev "$d/devsave"
mount -t tmpfs -o size=64k,mode=755 tmpfs /dev
for n in null zero random urandom full tty console; do
	if [ -e "$d/devsave/$n" ]; then touch "/dev/$n"; mount --bind "$d/devsave/$n" "/dev/$n"; fi
done
touch /dev/log
mount --bind "$d/syslog.sock" /dev/log
umount -l "$d/devsave"
exec "$@"
`

// syslogKeep is how much of a daemon's syslog the harness keeps (the
// tail), enough to see its start-up messages.
const syslogKeep = 256 << 10

// sysLog is the tail of what arrived on the syslog socket.
type sysLog struct {
	mu    sync.Mutex
	total int64  // bytes received so far
	tail  []byte // the last syslogKeep of them
}

func (l *sysLog) add(b []byte) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total += int64(len(b)) + 1
	l.tail = append(l.tail, b...)
	l.tail = append(l.tail, '\n')
	if len(l.tail) > syslogKeep {
		l.tail = append([]byte(nil), l.tail[len(l.tail)-syslogKeep/2:]...)
	}
}

// since returns what arrived after mark (a total), as far as it is kept.
func (l *sysLog) since(mark int64) string {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.total - mark
	if n <= 0 {
		return ""
	}
	if n > int64(len(l.tail)) {
		n = int64(len(l.tail))
	}
	return string(l.tail[int64(len(l.tail))-n:])
}

func (l *sysLog) mark() int64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

// startSyslog listens on dir/syslog.sock and keeps the tail of what
// arrives until the socket is closed (by close). The daemon's log goes
// there, not to a file, so its lease writes are all its disk writes.
func (d *daemon) startSyslog() error {
	path := filepath.Join(d.dir, "syslog.sock")
	os.Remove(path)
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return fmt.Errorf("syslog socket: %w", err)
	}
	c.SetReadBuffer(4 << 20)
	d.syslog = c
	d.slog = &sysLog{}
	go func() {
		buf := make([]byte, 8192)
		for {
			n, _, err := c.ReadFrom(buf)
			if err != nil {
				return
			}
			d.slog.add(buf[:n])
		}
	}()
	return nil
}

// close stops the daemon and its syslog socket, and unmounts miniupnpd's
// /var/run.
func (d *daemon) close() {
	d.stop()
	if d.syslog != nil {
		d.syslog.Close()
	}
	if d.runDir != "" {
		if err := unix.Unmount(d.runDir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) {
			fmt.Fprintf(os.Stderr, "bench: unmounting %s: %v\n", d.runDir, err)
		}
		d.runDir = ""
	}
}

// setup prepares the router for the target (once per lab).
func (d *daemon) setup() error {
	if err := d.startSyslog(); err != nil {
		return err
	}
	switch d.target {
	case MiniupnpdNftables:
		rules := filepath.Join(d.dir, "miniupnpd.nft")
		if err := os.WriteFile(rules, []byte(MiniupnpdRuleset), 0o644); err != nil {
			return err
		}
		if err := d.lab.Exec(d.lab.Router, "nft", "-f", rules); err != nil {
			return fmt.Errorf("loading miniupnpd ruleset: %w", err)
		}
	case MiniupnpdIptables:
		for _, args := range miniupnpdIptables {
			if err := d.lab.Exec(d.lab.Router, "iptables-legacy", args...); err != nil {
				return fmt.Errorf("miniupnpd iptables set-up: %w", err)
			}
		}
	}
	if d.target.IsDpfd() {
		be := strings.TrimPrefix(string(d.target), "dpfd-")
		d.conf = fmt.Sprintf(dpfdConf, be, filepath.Join(d.dbDir, "leases.db"), d.sock(), int(d.checkpoint/time.Second))
	} else {
		d.runDir = filepath.Join(d.dir, "run")
		if err := os.MkdirAll(d.runDir, 0o755); err != nil {
			return err
		}
		if err := unix.Mount("dpf-bench-run", d.runDir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size=16m,mode=755"); err != nil {
			d.runDir = ""
			return fmt.Errorf("mounting a tmpfs for miniupnpd's /var/run: %w", err)
		}
		d.conf = fmt.Sprintf(miniupnpdConf, filepath.Join(d.runDir, "miniupnpd.leases"), miniupnpdUUID)
	}
	return os.WriteFile(d.confPath(), []byte(d.conf), 0o644)
}

// setupText is the firewall set-up setup made for the target, as
// commands.
func (d *daemon) setupText() string {
	switch d.target {
	case MiniupnpdNftables:
		return "nft -f miniupnpd.nft, which holds:\n" + MiniupnpdRuleset
	case MiniupnpdIptables:
		var b strings.Builder
		for _, args := range miniupnpdIptables {
			fmt.Fprintf(&b, "iptables-legacy %s\n", strings.Join(args, " "))
		}
		return b.String()
	}
	return ""
}

// command returns the daemon's command line as its users' init script
// runs it: dpfd as files/etc/init.d/dpf has procd run it; miniupnpd as
// OpenWrt's init script does (-f CONF, no -d), with a pid file (-P) so
// the harness knows its process after it went into the background.
func (d *daemon) command() []string {
	if d.target.IsDpfd() {
		return append([]string{d.bin}, dpfdRunArgs(d.confPath())...)
	}
	return []string{d.bin, "-f", d.confPath(), "-P", d.pidPath()}
}

// dpfdRunArgs are the arguments files/etc/init.d/dpf gives dpfd
// (TestDpfdRunArgs compares them with the script): logging to syslog, at
// each line's own priority.
func dpfdRunArgs(conf string) []string { return []string{"run", "-c", conf, "--syslog"} }

// ErrDebugFlag is returned for a daemon command line or configuration
// that turns on debug or verbose logging: every daemon runs as its users
// run it (miniupnpd logs every request with -d and more with -v).
var ErrDebugFlag = errors.New("debug or verbose logging is on")

// checkRelease refuses a command line (args, after the program) or
// configuration text that turns on a daemon's debug or verbose logging.
func checkRelease(t Target, args []string, conf string) error {
	for i, a := range args {
		switch {
		case !t.IsDpfd() && (a == "-d" || strings.HasPrefix(a, "-v")):
			return fmt.Errorf("%s %s: %w", t, a, ErrDebugFlag)
		case t.IsDpfd() && (a == "-v" || a == "--verbose" || a == "-verbose"):
			return fmt.Errorf("%s %s: %w", t, a, ErrDebugFlag)
		case t.IsDpfd() && strings.TrimLeft(a, "-") == "log-level" && i+1 < len(args) && args[i+1] == "debug",
			t.IsDpfd() && strings.HasPrefix(strings.TrimLeft(a, "-"), "log-level=debug"):
			return fmt.Errorf("%s %s: %w", t, strings.Join(args[i:min(i+2, len(args))], " "), ErrDebugFlag)
		}
	}
	for line := range strings.Lines(conf) {
		f := strings.Fields(line)
		if t.IsDpfd() && len(f) >= 3 && f[0] == "option" && f[1] == "log_level" && strings.Trim(f[2], `'"`) == "debug" {
			return fmt.Errorf("%s configuration %q: %w", t, strings.TrimSpace(line), ErrDebugFlag)
		}
	}
	return nil
}

// start runs the daemon and waits until it serves requests, for at most
// timeout.
func (d *daemon) start(timeout time.Duration) error {
	argv := d.command()
	if err := checkRelease(d.target, argv[1:], d.conf); err != nil {
		return err
	}
	d.argv = argv
	os.Remove(d.pidPath())
	cmd := exec.Command("unshare", append([]string{"--mount", "--propagation", "private", "sh", "-c", privateDevLog, "sh", d.dir}, argv...)...)
	// What a daemon writes to stdout and stderr (dpfd: nothing after
	// start-up, its log goes to syslog; miniupnpd: errors before it
	// goes into the background) goes straight to a file: through a pipe,
	// a daemon that outlives the harness would get EPIPE.
	logPath := filepath.Join(d.dir, "daemon.log")
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening daemon log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	mark := d.slog.mark()
	cmd.Stdout, cmd.Stderr = logf, logf
	d.started = time.Now()
	if err := d.lab.Start(d.lab.Router, cmd); err != nil {
		return fmt.Errorf("starting %s: %w", d.target, err)
	}
	d.cmd = cmd
	deadline := time.Now().Add(timeout)
	if d.target.IsDpfd() {
		d.pid = cmd.Process.Pid // ip netns exec, unshare and sh exec in place
	} else if err := d.waitBackground(deadline); err != nil {
		return fmt.Errorf("%s: %w\n%s%s", d.target, err, tail(readFile(logPath), 1000), tail(d.slog.since(mark), 1000))
	}
	for time.Now().Before(deadline) {
		if !alive(d.pid) {
			return fmt.Errorf("%s exited: %w\n%s%s", d.target, ErrNotUp, tail(readFile(logPath), 1000), tail(d.slog.since(mark), 1000))
		}
		if d.target.IsDpfd() {
			var st control.Status
			if err := control.Call(d.sock(), control.MethodStatus, nil, &st); err == nil && len(st.Listening) > 0 {
				return nil
			}
		} else {
			log := d.slog.since(mark)
			if strings.Contains(log, "Port forwarding is now disabled") || strings.Contains(log, "EXITING") {
				return fmt.Errorf("%s will not forward: %w\n%s", d.target, ErrNotUp, tail(log, 2000))
			}
			if strings.Contains(log, "Listening for NAT-PMP/PCP traffic") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: %w within %v\n%s", d.target, ErrNotUp, timeout, tail(d.slog.since(mark), 500))
}

// waitBackground waits, until deadline, for miniupnpd's foreground process
// to exit (it forks into the background) and for its pid file, and sets
// d.pid.
func (d *daemon) waitBackground(deadline time.Time) error {
	done := make(chan error, 1)
	go func() { done <- d.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("it did not go into the background: %w", err)
		}
	case <-time.After(time.Until(deadline)):
		lab.Stop(d.cmd, syscall.SIGKILL)
		return fmt.Errorf("it stayed in the foreground: %w", ErrNotUp)
	}
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(d.pidPath())
		if pid, perr := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && perr == nil && pid > 1 {
			exe, _ := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
			if !sameFile(exe, d.bin) {
				return fmt.Errorf("its pid file names process %d, which runs %q, not %s", pid, exe, d.bin)
			}
			d.pid = pid
			return nil
		}
		time.Sleep(10 * time.Millisecond)
	}
	return fmt.Errorf("no pid file %s: %w", d.pidPath(), ErrNotUp)
}

// sameFile reports whether paths a and b name the same file.
func sameFile(a, b string) bool {
	fa, err1 := os.Stat(a)
	fb, err2 := os.Stat(b)
	return err1 == nil && err2 == nil && os.SameFile(fa, fb)
}

// alive reports whether process pid exists and is not a zombie. A daemon
// that went into the background is not the harness's child, and its new
// parent may not reap it at once.
func alive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i >= 0 && i+2 < len(s) && s[i+2] != 'Z'
}

func readFile(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stopTimeout bounds the wait for a stopped daemon to exit.
const stopTimeout = 5 * time.Second

// stop ends the daemon: dpfd with SIGTERM (its normal stop), miniupnpd with
// SIGKILL (on SIGTERM it deletes its mappings, and with them its lease
// file, so nothing would be left to restore).
func (d *daemon) stop() {
	if d.target.IsDpfd() {
		if d.cmd != nil {
			lab.Stop(d.cmd, syscall.SIGTERM)
		}
	} else if d.pid > 0 && alive(d.pid) {
		syscall.Kill(d.pid, syscall.SIGKILL) // the pid its own pid file gave (waitBackground)
		for deadline := time.Now().Add(stopTimeout); alive(d.pid) && time.Now().Before(deadline); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	d.cmd, d.pid = nil, 0
}

// clearRules removes the daemon's port forwarding rules from the router,
// as after a reboot (the daemon's stored state stays).
func (d *daemon) clearRules() error {
	var cmds [][]string
	switch d.target {
	case DpfdNftables, DpfdIptables:
		cmds = [][]string{{d.bin, "cleanup", "-c", d.confPath()}}
	case MiniupnpdNftables:
		for _, ch := range []string{"miniupnpd", "prerouting_miniupnpd", "postrouting_miniupnpd"} {
			cmds = append(cmds, []string{"nft", "flush", "chain", "inet", "filter", ch})
		}
	case MiniupnpdIptables:
		cmds = [][]string{
			{"iptables-legacy", "-t", "nat", "-F", "MINIUPNPD"},
			{"iptables-legacy", "-t", "nat", "-F", "MINIUPNPD-POSTROUTING"},
			{"iptables-legacy", "-t", "filter", "-F", "MINIUPNPD"},
		}
	}
	for _, c := range cmds {
		if err := d.lab.Exec(d.lab.Router, c[0], c[1:]...); err != nil {
			return fmt.Errorf("clearing rules: %w", err)
		}
	}
	return nil
}

// dumpTimeout bounds one listing of the router's rules.
const dumpTimeout = 30 * time.Second

// rules returns the router's ruleset as text: nft for the nftables
// targets, iptables-save (both flavours) for the iptables targets.
func (d *daemon) rules() string {
	if strings.HasSuffix(string(d.target), "nftables") {
		out, _ := d.lab.Output(dumpTimeout, d.lab.Router, "nft", "list", "ruleset")
		return out
	}
	a, _ := d.lab.Output(dumpTimeout, d.lab.Router, "iptables-save")
	b, _ := d.lab.Output(dumpTimeout, d.lab.Router, "iptables-legacy-save")
	return a + b
}

// present counts how many of ports the router's ruleset holds: read over
// netlink for the nftables targets (nftPorts), from iptables-save text for
// the iptables ones.
func (d *daemon) present(ports map[uint16]bool) int {
	if !strings.HasSuffix(string(d.target), "nftables") {
		return portsPresent(d.rules(), ports)
	}
	have, err := nftPorts(d.lab)
	if err != nil {
		return 0
	}
	n := 0
	for p := range ports {
		if have[p] {
			n++
		}
	}
	return n
}

var numRE = regexp.MustCompile(`\d+`)

// portsPresent counts how many of ports occur as numbers in the ruleset.
func portsPresent(ruleset string, ports map[uint16]bool) int {
	seen := make(map[uint16]bool, len(ports))
	for _, m := range numRE.FindAllString(ruleset, -1) {
		if v, err := strconv.Atoi(m); err == nil && v < 65536 && ports[uint16(v)] {
			seen[uint16(v)] = true
		}
	}
	return len(seen)
}

// procStats is a daemon's resource use.
type procStats struct {
	RSS        uint64  // bytes
	CPU        float64 // seconds, user + system
	WriteBytes uint64  // bytes caused to be written to storage
	WChar      uint64  // bytes passed to write system calls
}

// clockTicks is USER_HZ, the unit of /proc/PID/stat times on Linux.
const clockTicks = 100

func (d *daemon) stats() (procStats, error) {
	var ps procStats
	if d.pid <= 0 {
		return ps, fmt.Errorf("%s: %w", d.target, ErrNotUp)
	}
	pid := d.pid
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return ps, fmt.Errorf("reading status: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseUint(f[1], 10, 64)
			ps.RSS = kb * 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ps, fmt.Errorf("reading stat: %w", err)
	}
	// Fields after the parenthesised command name; utime and stime are
	// fields 14 and 15 of the whole line.
	s := string(stat)
	if i := strings.LastIndexByte(s, ')'); i >= 0 {
		f := strings.Fields(s[i+1:])
		if len(f) > 13 {
			u, _ := strconv.ParseFloat(f[11], 64)
			st, _ := strconv.ParseFloat(f[12], 64)
			ps.CPU = (u + st) / clockTicks
		}
	}
	io, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return ps, fmt.Errorf("reading io: %w", err)
	}
	for line := range strings.Lines(string(io)) {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ": ")
		n, _ := strconv.ParseUint(v, 10, 64)
		switch k {
		case "write_bytes":
			ps.WriteBytes = n
		case "wchar":
			ps.WChar = n
		}
	}
	return ps, nil
}

// waitRules polls the ruleset until every port in ports is present or ctx
// ends, and returns how many were present at the end.
func (d *daemon) waitRules(ctx context.Context, ports map[uint16]bool) int {
	for {
		n := d.present(ports)
		if n >= len(ports) || ctx.Err() != nil {
			return n
		}
		time.Sleep(10 * time.Millisecond)
	}
}
