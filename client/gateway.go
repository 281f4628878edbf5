package client

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"net/netip"
	"os"
	"strconv"
)

// routeFile is the Linux kernel's IPv4 routing table. On other systems it
// does not exist, discovery fails with ErrNoGateway and Config.Gateway must
// be set.
const routeFile = "/proc/net/route"

// Route flags from <linux/route.h>.
const (
	rtfUp      = 0x1
	rtfGateway = 0x2
)

// discoverGateway returns the gateway of the default IPv4 route.
func discoverGateway() (netip.Addr, error) {
	data, err := os.ReadFile(routeFile)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("%w: %w", ErrNoGateway, err)
	}
	return parseRoute(data, binary.NativeEndian)
}

// parseRoute returns the gateway of the default IPv4 route in data, the text
// of /proc/net/route: among the lines with destination 0.0.0.0, mask 0 and
// flags up and gateway, the one with the lowest metric (the first on a tie).
// The kernel prints addresses as the 32-bit value of the network-order
// bytes read in host byte order, so order must be the host's
// (binary.NativeEndian); tests pass either. Malformed lines are skipped. It
// returns an error wrapping ErrNoGateway when there is no such route.
func parseRoute(data []byte, order binary.ByteOrder) (netip.Addr, error) {
	var best netip.Addr
	bestMetric := uint64(0)
	sc := bufio.NewScanner(bytes.NewReader(data))
	for first := true; sc.Scan(); first = false {
		f := bytes.Fields(sc.Bytes())
		if first || len(f) < 8 {
			continue // header line or short line
		}
		dst, err1 := strconv.ParseUint(string(f[1]), 16, 32)
		gw, err2 := strconv.ParseUint(string(f[2]), 16, 32)
		flags, err3 := strconv.ParseUint(string(f[3]), 16, 32)
		metric, err4 := strconv.ParseUint(string(f[6]), 10, 32)
		mask, err5 := strconv.ParseUint(string(f[7]), 16, 32)
		if err1 != nil || err2 != nil || err3 != nil || err4 != nil || err5 != nil {
			continue
		}
		if dst != 0 || mask != 0 || flags&(rtfUp|rtfGateway) != rtfUp|rtfGateway || gw == 0 {
			continue
		}
		var b [4]byte
		order.PutUint32(b[:], uint32(gw))
		if !best.IsValid() || metric < bestMetric {
			best, bestMetric = netip.AddrFrom4(b), metric
		}
	}
	if !best.IsValid() {
		return netip.Addr{}, fmt.Errorf("%w: no default IPv4 route in %s", ErrNoGateway, routeFile)
	}
	return best, nil
}
