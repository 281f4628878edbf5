//go:build linux

package firewall

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// iptables-legacy has no generation id and sends no notifications. Its
// stand-in for the generation is a fingerprint of the nat and filter
// tables: their number of entries and size in bytes, which the kernel
// reports for the asking (IPT_SO_GET_INFO, a few microseconds) and which
// every flush, append or delete changes, since legacy iptables replaces a
// whole table at each change. A change that keeps both (a rule replaced by
// one of the same size) would go unseen, so the fingerprint also changes
// once every legacyDeepCheck: the backstop then reads the rules.

// legacyDeepCheck bounds how long a change the fingerprint cannot see goes
// unnoticed; a full Verify at 4,000 pinholes costs about a fifth of a
// second of CPU, so once a minute is noise.
const legacyDeepCheck = time.Minute

// IPT_SO_GET_INFO (linux/netfilter_ipv4/ip_tables.h: IPT_BASE_CTL) and the
// size of struct ipt_getinfo: name[32], valid_hooks, hook_entry[5],
// underflow[5], num_entries, size (all u32).
const (
	iptSOGetInfo  = 64
	iptGetinfoLen = 32 + 4 + 5*4 + 5*4 + 4 + 4
)

// legacyGen is the iptables-legacy genSource. Not safe for concurrent use.
type legacyGen struct {
	netns string
	now   func() time.Time
	fd    int // raw IPv4 socket in netns; 0 until opened
}

func (g *legacyGen) read() (uint32, error) {
	if g.fd <= 0 {
		err := inNetNS(g.netns, func() error {
			var err error
			g.fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			return err
		})
		if err != nil {
			g.fd = 0
			return 0, fmt.Errorf("firewall: iptables-legacy info socket: %w", err)
		}
	}
	h := fnv.New32a()
	for _, table := range []string{iptTableNAT, iptTableFilter} {
		var info [iptGetinfoLen]byte
		copy(info[:], table)
		l := uint32(len(info))
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(g.fd), unix.IPPROTO_IP, iptSOGetInfo,
			uintptr(unsafe.Pointer(&info[0])), uintptr(unsafe.Pointer(&l)), 0)
		switch {
		case e == unix.ENOENT:
			// Not loaded (yet): no rules, which the fingerprint says
			// by hashing zeros.
			clear(info[:])
		case e != 0:
			return 0, fmt.Errorf("firewall: iptables-legacy %s info: %w", table, e)
		}
		h.Write(info[iptGetinfoLen-8:]) // num_entries, size
	}
	h.Write(binary.BigEndian.AppendUint64(nil, uint64(g.now().Unix()/int64(legacyDeepCheck/time.Second))))
	return h.Sum32(), nil
}

func (g *legacyGen) close() {
	if g.fd > 0 {
		unix.Close(g.fd)
		g.fd = 0
	}
}
