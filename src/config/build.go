package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dpf-router/dpf/src/policy"
)

// builder turns sections into typed values, making *Error with its file name.
type builder struct{ file string }

func (b *builder) errf(line int, option, format string, a ...any) *Error {
	return &Error{File: b.file, Line: line, Option: option, Msg: fmt.Sprintf(format, a...)}
}

// valueLine returns the line of o's i-th value.
func valueLine(o *Option, i int) int {
	if i < len(o.ValueLines) {
		return o.ValueLines[i]
	}
	return o.Line
}

// single returns the value of an option that takes one value.
func (b *builder) single(o *Option) (string, error) {
	if o.IsList || len(o.Values) != 1 {
		return "", b.errf(o.Line, o.Name, "takes one value: write \"option %s VALUE\", not list", o.Name)
	}
	return o.Values[0], nil
}

// words returns the words of all of o's values (a list, or one value holding
// words separated by spaces) with the line of each.
func (b *builder) words(o *Option) ([]string, []int, error) {
	var ws []string
	var lines []int
	for i, v := range o.Values {
		f := strings.Fields(v)
		if len(f) == 0 {
			return nil, nil, b.errf(valueLine(o, i), o.Name, "empty value")
		}
		for _, w := range f {
			ws = append(ws, w)
			lines = append(lines, valueLine(o, i))
		}
	}
	return ws, lines, nil
}

// parseBool reads a UCI boolean as libuci's uci_parse_bool and OpenWrt's
// shell functions do.
func parseBool(s string) (v, ok bool) {
	switch strings.ToLower(s) {
	case "1", "yes", "on", "true", "enabled":
		return true, true
	case "0", "no", "off", "false", "disabled":
		return false, true
	}
	return false, false
}

func (b *builder) boolean(o *Option) (bool, error) {
	s, err := b.single(o)
	if err != nil {
		return false, err
	}
	v, ok := parseBool(s)
	if !ok {
		return false, b.errf(o.Line, o.Name, "%q is not a boolean (use 1/0, yes/no, on/off, true/false or enabled/disabled)", s)
	}
	return v, nil
}

// seconds reads a whole number of seconds in [lo, hi].
func (b *builder) seconds(o *Option, lo, hi time.Duration) (time.Duration, error) {
	s, err := b.single(o)
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseUint(s, 10, 63)
	if err != nil {
		return 0, b.errf(o.Line, o.Name, "%q is not a number of seconds", s)
	}
	if n > uint64(hi/time.Second) || time.Duration(n)*time.Second < lo {
		return 0, b.errf(o.Line, o.Name, "%d seconds is out of range (%d to %d)", n, lo/time.Second, hi/time.Second)
	}
	return time.Duration(n) * time.Second, nil
}

// integer reads a whole number, at least lo.
func (b *builder) integer(o *Option, lo int) (int, error) {
	s, err := b.single(o)
	if err != nil {
		return 0, err
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, b.errf(o.Line, o.Name, "%q is not a whole number", s)
	}
	if n < lo {
		return 0, b.errf(o.Line, o.Name, "%d is too small (at least %d)", n, lo)
	}
	return n, nil
}

// oneOf reads one of the given words.
func (b *builder) oneOf(o *Option, words ...string) (string, error) {
	s, err := b.single(o)
	if err != nil {
		return "", err
	}
	if !slices.Contains(words, s) {
		return "", b.errf(o.Line, o.Name, "%q is not one of %s", s, strings.Join(words, ", "))
	}
	return s, nil
}

// path reads an absolute file name.
func (b *builder) path(o *Option) (string, error) {
	s, err := b.single(o)
	if err != nil {
		return "", err
	}
	if !strings.HasPrefix(s, "/") || strings.ContainsAny(s, "\n\r") {
		return "", b.errf(o.Line, o.Name, "%q is not an absolute path", s)
	}
	return s, nil
}

// validIface reports whether s can name a network interface, a device
// ("br-lan") or an OpenWrt logical interface ("wan").
func validIface(s string) bool {
	return s != "" && s != "." && s != ".." && !strings.ContainsAny(s, "/ \t\n\r\v\f:")
}

func (b *builder) main(c *Config, s *Section) error {
	for i := range s.Options {
		o := &s.Options[i]
		opt := lookupOption(mainOptions, o.Name)
		if opt == nil {
			return b.errf(o.Line, o.Name, "unknown option in config %s section", SectionMain)
		}
		if err := opt.set(b, c, o); err != nil {
			return err
		}
	}
	haveLAN, haveWAN := s.Lookup("lan_interface") != nil, s.Lookup("wan_interface") != nil
	if !haveLAN {
		return b.errf(s.Line, "lan_interface", "required: the LAN interfaces to serve, e.g. list lan_interface 'br-lan'")
	}
	if !haveWAN {
		return b.errf(s.Line, "wan_interface", "required: the WAN interface, e.g. option wan_interface 'wan'")
	}
	if c.MinLifetime > c.MaxLifetime {
		line := s.Line
		if o := s.Lookup("max_lifetime"); o != nil {
			line = o.Line
		} else if o := s.Lookup("min_lifetime"); o != nil {
			line = o.Line
		}
		return b.errf(line, "max_lifetime", "max_lifetime (%d s) is below min_lifetime (%d s)",
			c.MaxLifetime/time.Second, c.MinLifetime/time.Second)
	}
	return nil
}

// dbusMode reads auto or a UCI boolean.
func (b *builder) dbusMode(o *Option) (string, error) {
	s, err := b.single(o)
	if err != nil {
		return "", err
	}
	if strings.ToLower(s) == DBusAuto {
		return DBusAuto, nil
	}
	v, ok := parseBool(s)
	if !ok {
		return "", b.errf(o.Line, o.Name, "%q is not auto, 1 or 0", s)
	}
	if v {
		return DBusOn, nil
	}
	return DBusOff, nil
}

// dbusAddress checks the syntax of a D-Bus server address (D-Bus
// specification, "Server Addresses"): one or more "transport:key=value,..."
// separated by semicolons. It does not check that the transport exists.
func (b *builder) dbusAddress(o *Option) (string, error) {
	s, err := b.single(o)
	if err != nil {
		return "", err
	}
	bad := func() (string, error) {
		return "", b.errf(o.Line, o.Name, "%q is not a D-Bus address (for example unix:path=/run/dbus/system_bus_socket)", s)
	}
	if s == "" || strings.IndexFunc(s, func(r rune) bool { return r <= ' ' || r == 0x7f }) >= 0 {
		return bad()
	}
	for _, a := range strings.Split(strings.TrimSuffix(s, ";"), ";") {
		transport, params, ok := strings.Cut(a, ":")
		if !ok || transport == "" {
			return bad()
		}
		if params == "" {
			continue
		}
		for _, kv := range strings.Split(params, ",") {
			if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
				return bad()
			}
		}
	}
	return s, nil
}

func (b *builder) lanInterfaces(o *Option) ([]string, error) {
	ws, lines, err := b.words(o)
	if err != nil {
		return nil, err
	}
	for i, w := range ws {
		if !validIface(w) {
			return nil, b.errf(lines[i], o.Name, "%q is not an interface name", w)
		}
		if slices.Contains(ws[:i], w) {
			return nil, b.errf(lines[i], o.Name, "%q is listed twice", w)
		}
	}
	return ws, nil
}

func (b *builder) wanInterface(o *Option) (string, error) {
	v, err := b.single(o)
	if err == nil && !validIface(v) {
		err = b.errf(o.Line, o.Name, "%q is not an interface name", v)
	}
	return v, err
}

func (b *builder) externalAddress(o *Option) (netip.Addr, error) {
	s, err := b.single(o)
	if err != nil {
		return netip.Addr{}, err
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, b.errf(o.Line, o.Name, "%q is not an IP address", s)
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() || a.IsLoopback() {
		return netip.Addr{}, b.errf(o.Line, o.Name, "%s cannot be an external address", a)
	}
	return a, nil
}

func (b *builder) rate(o *Option) (float64, error) {
	s, err := b.single(o)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsNaN(v) || math.IsInf(v, 0) {
		return 0, b.errf(o.Line, o.Name, "%q is not a number of requests per second", s)
	}
	if v <= 0 {
		return 0, b.errf(o.Line, o.Name, "%q must be above 0", s)
	}
	return v, nil
}

// rule builds one policy rule. Absent options mean: int_addr and client any,
// int_ports and ext_ports any, proto any, third_party 0. action is required.
func (b *builder) rule(s *Section) (policy.Rule, error) {
	r := policy.Rule{IntPorts: policy.AnyPorts, ExtPorts: policy.AnyPorts, Line: s.Line, Name: s.Name}
	for i := range s.Options {
		o := &s.Options[i]
		opt := lookupOption(ruleOptions, o.Name)
		if opt == nil {
			return policy.Rule{}, b.errf(o.Line, o.Name, "unknown option in config %s section", SectionRule)
		}
		if err := opt.set(b, &r, o); err != nil {
			return policy.Rule{}, err
		}
	}
	haveAction := s.Lookup("action") != nil
	if !haveAction {
		return policy.Rule{}, b.errf(s.Line, "action", "required in every config %s section: allow or deny", SectionRule)
	}
	return r, nil
}

// singleParsed reads a single value with parse; bad is the message for a
// value parse refuses, with %q for the value.
func singleParsed[T any](b *builder, o *Option, parse func(string) (T, error), bad string) (T, error) {
	var zero T
	v, err := b.single(o)
	if err != nil {
		return zero, err
	}
	x, err := parse(v)
	if err != nil {
		return zero, b.errf(o.Line, o.Name, bad, v)
	}
	return x, nil
}

// action reads a rule's option action.
func (b *builder) action(o *Option) (policy.Action, error) {
	return singleParsed(b, o, policy.ParseAction, "%q is not allow or deny")
}

// proto reads a rule's option proto.
func (b *builder) proto(o *Option) (policy.Proto, error) {
	return singleParsed(b, o, policy.ParseRuleProto, "%q is not tcp, udp or any")
}

func (b *builder) ports(o *Option) (policy.PortRange, error) {
	return singleParsed(b, o, policy.ParsePortRange, "%q is not a port, a range like 1024-65535 or any")
}

// prefixes reads addresses and CIDR prefixes; with lanOK the word "lan"
// sets useLAN.
func (b *builder) prefixes(o *Option, lanOK bool) (ps []netip.Prefix, useLAN bool, err error) {
	ws, lines, err := b.words(o)
	if err != nil {
		return nil, false, err
	}
	for i, w := range ws {
		if w == "lan" {
			if !lanOK {
				return nil, false, b.errf(lines[i], o.Name, "\"lan\" is only allowed in int_addr")
			}
			useLAN = true
			continue
		}
		p, err := parsePrefix(w)
		if err != nil {
			return nil, false, b.errf(lines[i], o.Name, "%v", err)
		}
		ps = append(ps, p)
	}
	return ps, useLAN, nil
}

// parsePrefix reads an address (as a single-address prefix) or a CIDR
// prefix without host bits.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
		}
		if p.Addr().Is4In6() {
			return netip.Prefix{}, fmt.Errorf("%q: write IPv4 prefixes in IPv4 form", s)
		}
		if m := p.Masked(); m != p {
			return netip.Prefix{}, fmt.Errorf("%q has bits set after the prefix length; did you mean %s?", s, m)
		}
		return p, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or CIDR prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
