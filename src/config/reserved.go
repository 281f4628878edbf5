package config

import (
	"strings"

	"github.com/dpf-router/dpf/src/policy"
)

// ReservedPort is one entry of option reserved_ports: external ports that
// dpfd never hands out, whatever the rules allow, because the router itself
// serves them.
type ReservedPort struct {
	// Proto is policy.TCP, policy.UDP or policy.ProtoAny (both).
	Proto policy.Proto
	// Ports is an inclusive range, never containing port 0.
	Ports policy.PortRange
}

// Contains reports whether the entry reserves port of proto (TCP or UDP).
func (r ReservedPort) Contains(proto policy.Proto, port uint16) bool {
	return (r.Proto == policy.ProtoAny || r.Proto == proto) && r.Ports.Contains(port)
}

// String returns the entry as option reserved_ports writes it: "53",
// "22/tcp", "67-68/udp".
func (r ReservedPort) String() string {
	if r.Proto == policy.ProtoAny {
		return r.Ports.String()
	}
	return r.Ports.String() + "/" + r.Proto.String()
}

// DefaultReservedPorts returns the ports reserved when option
// reserved_ports is absent (or names "default"), a new slice on every call:
// the services an OpenWrt or Debian router commonly runs itself, whose
// inbound traffic a mapping's DNAT would divert to a LAN host.
//
//	22/tcp    ssh (dropbear, openssh)
//	23/tcp    telnet (OpenWrt's failsafe mode, older firmware)
//	53        DNS, UDP and TCP (dnsmasq, unbound)
//	80/tcp    the web interface (uhttpd with LuCI) and its redirect
//	443/tcp   the web interface over TLS
//	67/udp    the DHCP server
//	68/udp    the DHCP client: on the WAN it renews the router's own lease,
//	          so mapping 68 would cut the router off at the next renewal
//	123/udp   NTP (sysntpd, chrony)
//	1900/udp  SSDP (miniupnpd's UPnP IGD discovery)
//	5351/udp  PCP and NAT-PMP (dpfd itself, miniupnpd)
//	5353/udp  mDNS (umdns, avahi)
//
// dpfd also refuses, without configuration, every port on which the router
// has a listening socket on the WAN or wildcard address (see
// internal/listening); this list covers services that are down or not yet
// started when a mapping is made.
func DefaultReservedPorts() []ReservedPort {
	tcp := func(p uint16) ReservedPort { return ReservedPort{policy.TCP, policy.PortRange{First: p, Last: p}} }
	udp := func(p uint16) ReservedPort { return ReservedPort{policy.UDP, policy.PortRange{First: p, Last: p}} }
	return []ReservedPort{
		tcp(22), tcp(23), {policy.ProtoAny, policy.PortRange{First: 53, Last: 53}}, tcp(80), tcp(443),
		udp(67), udp(68), udp(123), udp(1900), udp(5351), udp(5353),
	}
}

// Words of option reserved_ports besides port entries.
const (
	reservedDefault = "default" // the DefaultReservedPorts list
	reservedNone    = "none"    // nothing (alone)
)

// reservedPorts reads option or list reserved_ports: words (a list, or
// separated by spaces) each of which is PORT or FIRST-LAST, optionally
// followed by /tcp or /udp (both protocols without), or "default" for
// DefaultReservedPorts; "none", alone, reserves nothing. Port 0 and "any"
// are refused. An error names the line of the offending value.
func (b *builder) reservedPorts(o *Option) ([]ReservedPort, error) {
	ws, lines, err := b.words(o)
	if err != nil {
		return nil, err
	}
	out := []ReservedPort{}
	for i, w := range ws {
		switch w {
		case reservedNone:
			if len(ws) != 1 {
				return nil, b.errf(lines[i], o.Name, "%q cannot be combined with other values", w)
			}
			continue
		case reservedDefault:
			out = append(out, DefaultReservedPorts()...)
			continue
		}
		r := ReservedPort{Proto: policy.ProtoAny}
		ports, proto, hasProto := strings.Cut(w, "/")
		if hasProto {
			switch strings.ToLower(proto) {
			case "tcp":
				r.Proto = policy.TCP
			case "udp":
				r.Proto = policy.UDP
			default:
				return nil, b.errf(lines[i], o.Name, "%q: the protocol after / must be tcp or udp", w)
			}
		}
		pr, err := policy.ParsePortRange(ports)
		if err != nil || pr.IsAny() || pr.First == 0 || ports != strings.TrimSpace(ports) {
			return nil, b.errf(lines[i], o.Name, "%q is not a port or range of ports 1-65535, optionally with /tcp or /udp (e.g. 22/tcp, 53, 6000-6010/udp), default or none", w)
		}
		r.Ports = pr
		out = append(out, r)
	}
	return out, nil
}
