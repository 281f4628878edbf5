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
	dbDir  string // dpfd's lease database, miniupnpd's lease file
	// checkpoint is dpfd's checkpoint_interval (shortened for the
	// scaled write workload).
	checkpoint time.Duration
	cmd        *exec.Cmd
	syslog     *net.UnixConn // miniupnpd's /dev/log
	slog       *sysLog       // what arrived there
	started    time.Time
}

func (d *daemon) confPath() string { return filepath.Join(d.dir, "daemon.conf") }
func (d *daemon) sock() string     { return filepath.Join(d.dir, "dpfd.sock") }

// dpfdConf allows the benchmark's load: no per-host or rate limits in the way.
const dpfdConf = `config dpf 'main'
	list lan_interface 'br-lan'
	option wan_interface 'wan0'
	option backend '%s'
	option db '%s'
	option socket '%s'
	option min_lifetime '2'
	option max_lifetime '86400'
	option max_per_host '100000'
	option max_leases '100000'
	option rate_limit '1000000'
	option rate_burst '1000000'
	option checkpoint_interval '%d'
	option log_level 'warn'
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

// miniupnpdConf: NAT-PMP/PCP only, every LAN port allowed, the lease file
// on (so a restart can restore mappings), STUN for the public address.
const miniupnpdConf = `ext_ifname=wan0
listening_ip=br-lan
port=0
enable_natpmp=yes
enable_upnp=no
secure_mode=yes
system_uptime=no
min_lifetime=2
max_lifetime=86400
lease_file=%s
ext_perform_stun=yes
ext_stun_host=203.0.113.2
ext_stun_port=3478
allow 1024-65535 198.51.100.0/24 1024-65535
deny 0-65535 0.0.0.0/0 0-65535
`

// privateDevLog runs "$@" (after the directory argument $1) in a private
// mount namespace whose /dev is a small tmpfs holding the usual character
// devices and, as /dev/log, the harness's syslog socket $1/syslog.sock.
// Without a syslog daemon, miniupnpd writes every log line to /dev/console,
// which costs about 1 ms a line and would dominate its figures; a router
// has a syslog daemon. The shells and unshare exec in turn, so the PID is
// miniupnpd's.
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

// syslogKeep is how much of miniupnpd's syslog the harness keeps (the
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
// arrives until the socket is closed (by close). miniupnpd's log goes
// there, not to a file, so its lease-file writes are all its disk writes.
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

// close stops the daemon and its syslog socket.
func (d *daemon) close() {
	d.stop()
	if d.syslog != nil {
		d.syslog.Close()
	}
}

// setup prepares the router for the target (once per lab).
func (d *daemon) setup() error {
	if !d.target.IsDpfd() {
		if err := d.startSyslog(); err != nil {
			return err
		}
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
	var conf string
	if d.target.IsDpfd() {
		be := strings.TrimPrefix(string(d.target), "dpfd-")
		conf = fmt.Sprintf(dpfdConf, be, filepath.Join(d.dbDir, "leases.db"), d.sock(), int(d.checkpoint/time.Second))
	} else {
		conf = fmt.Sprintf(miniupnpdConf, filepath.Join(d.dbDir, "miniupnpd.leases"))
	}
	return os.WriteFile(d.confPath(), []byte(conf), 0o644)
}

// start runs the daemon and waits until it serves requests, for at most
// timeout.
func (d *daemon) start(timeout time.Duration) error {
	var cmd *exec.Cmd
	if d.target.IsDpfd() {
		cmd = exec.Command(d.bin, "run", "-c", d.confPath())
	} else {
		cmd = exec.Command("unshare", "--mount", "--propagation", "private", "sh", "-c", privateDevLog, "sh",
			d.dir, d.bin, "-d", "-f", d.confPath(), "-P", filepath.Join(d.dir, "miniupnpd.pid"))
	}
	// dpfd's log (warnings only) goes straight to a file: through a pipe,
	// a daemon that outlives the harness would get EPIPE. miniupnpd's -d
	// copy of its syslog goes to /dev/null.
	logPath := filepath.Join(d.dir, "daemon.log")
	if !d.target.IsDpfd() {
		logPath = os.DevNull
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("opening daemon log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	var mark int64
	if d.slog != nil {
		mark = d.slog.mark()
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	d.started = time.Now()
	if err := d.lab.Start(d.lab.Router, cmd); err != nil {
		return fmt.Errorf("starting %s: %w", d.target, err)
	}
	d.cmd = cmd
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if d.target.IsDpfd() {
			var st control.Status
			if err := control.Call(d.sock(), control.MethodStatus, nil, &st); err == nil && len(st.Listening) > 0 {
				return nil
			}
		} else {
			log := d.logSince(mark)
			if strings.Contains(log, "Port forwarding is now disabled") || strings.Contains(log, "EXITING") {
				return fmt.Errorf("%s will not forward: %w\n%s", d.target, ErrNotUp, tail(log, 2000))
			}
			if strings.Contains(log, "Listening for NAT-PMP/PCP traffic") {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("%s: %w within %v\n%s", d.target, ErrNotUp, timeout, tail(d.logSince(mark), 500))
}

// logSince returns the daemon log from mark on: miniupnpd's syslog, or
// dpfd's log file.
func (d *daemon) logSince(mark int64) string {
	if d.slog != nil {
		return d.slog.since(mark)
	}
	b, err := os.ReadFile(filepath.Join(d.dir, "daemon.log"))
	if err != nil || int64(len(b)) < mark {
		return ""
	}
	return string(b[mark:])
}

func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

// stop ends the daemon: dpfd with SIGTERM (its normal stop), miniupnpd with
// SIGKILL (on SIGTERM it deletes its mappings, and with them its lease
// file, so nothing would be left to restore).
func (d *daemon) stop() {
	if d.cmd == nil {
		return
	}
	sig := syscall.SIGTERM
	if !d.target.IsDpfd() {
		sig = syscall.SIGKILL
	}
	lab.Stop(d.cmd, sig)
	d.cmd = nil
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
	if d.cmd == nil || d.cmd.Process == nil {
		return ps, fmt.Errorf("%s: %w", d.target, ErrNotUp)
	}
	pid := d.cmd.Process.Pid // ip netns exec execs the daemon in place
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
