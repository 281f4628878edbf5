package config

import (
	"errors"
	"reflect"
	"testing"

	"github.com/dpf-router/dpf/src/policy"
)

func rp(proto policy.Proto, first, last uint16) ReservedPort {
	return ReservedPort{Proto: proto, Ports: policy.PortRange{First: first, Last: last}}
}

func TestReservedPortsDefault(t *testing.T) {
	c, err := fromString(t, minimal)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.ReservedPorts, DefaultReservedPorts()) {
		t.Fatalf("absent option: %v", c.ReservedPorts)
	}
	// The router's usual services are in the default list.
	for _, p := range []struct {
		proto policy.Proto
		port  uint16
	}{{policy.TCP, 22}, {policy.TCP, 53}, {policy.UDP, 53}, {policy.TCP, 80}, {policy.TCP, 443},
		{policy.UDP, 67}, {policy.UDP, 68}, {policy.UDP, 123}, {policy.UDP, 5351}, {policy.UDP, 5353}} {
		if !reserves(c.ReservedPorts, p.proto, p.port) {
			t.Errorf("default does not reserve %s/%d", p.proto, p.port)
		}
	}
	if reserves(c.ReservedPorts, policy.UDP, 22) || reserves(c.ReservedPorts, policy.TCP, 8080) {
		t.Error("default reserves udp/22 or tcp/8080")
	}
	DefaultReservedPorts()[0].Ports.First = 1
	if DefaultReservedPorts()[0].Ports.First != 22 {
		t.Error("DefaultReservedPorts shares its slice")
	}
}

func reserves(rs []ReservedPort, proto policy.Proto, port uint16) bool {
	for _, r := range rs {
		if r.Contains(proto, port) {
			return true
		}
	}
	return false
}

func TestReservedPortsValues(t *testing.T) {
	tests := []struct {
		lines string
		want  []ReservedPort
	}{
		{"option reserved_ports none", []ReservedPort{}},
		{"option reserved_ports '22/tcp'", []ReservedPort{rp(policy.TCP, 22, 22)}},
		{"option reserved_ports '53 6000-6010/UDP 8443/tcp'",
			[]ReservedPort{rp(policy.ProtoAny, 53, 53), rp(policy.UDP, 6000, 6010), rp(policy.TCP, 8443, 8443)}},
		{"list reserved_ports 1-1023\n\tlist reserved_ports 65535/udp",
			[]ReservedPort{rp(policy.ProtoAny, 1, 1023), rp(policy.UDP, 65535, 65535)}},
		{"list reserved_ports default\n\tlist reserved_ports 8443/tcp",
			append(DefaultReservedPorts(), rp(policy.TCP, 8443, 8443))},
	}
	for _, tt := range tests {
		t.Run(tt.lines, func(t *testing.T) {
			c, err := fromString(t, minimal+"\t"+tt.lines+"\n")
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.ReservedPorts, tt.want) {
				t.Fatalf("ReservedPorts = %v, want %v", c.ReservedPorts, tt.want)
			}
		})
	}
	if s := rp(policy.UDP, 67, 68).String() + " " + rp(policy.ProtoAny, 53, 53).String(); s != "67-68/udp 53" {
		t.Errorf("String: %q", s)
	}
}

// TestReservedPortsErrors: each bad value is reported with the line it is
// on, also when it is the second value of a list.
func TestReservedPortsErrors(t *testing.T) {
	const f = "/etc/config/dpf"
	const usage = " is not a port or range of ports 1-65535, optionally with /tcp or /udp (e.g. 22/tcp, 53, 6000-6010/udp), default or none"
	tests := []struct {
		lines string
		want  string
	}{
		{"option reserved_ports ssh", f + `:4: option reserved_ports: "ssh"` + usage},
		{"option reserved_ports 0", f + `:4: option reserved_ports: "0"` + usage},
		{"option reserved_ports 0-10/tcp", f + `:4: option reserved_ports: "0-10/tcp"` + usage},
		{"option reserved_ports any", f + `:4: option reserved_ports: "any"` + usage},
		{"option reserved_ports 65536", f + `:4: option reserved_ports: "65536"` + usage},
		{"option reserved_ports 100-90", f + `:4: option reserved_ports: "100-90"` + usage},
		{"option reserved_ports '22/sctp'", f + `:4: option reserved_ports: "22/sctp": the protocol after / must be tcp or udp`},
		{"option reserved_ports '22/'", f + `:4: option reserved_ports: "22/": the protocol after / must be tcp or udp`},
		{"option reserved_ports '/tcp'", f + `:4: option reserved_ports: "/tcp"` + usage},
		{"option reserved_ports 'none 22'", f + `:4: option reserved_ports: "none" cannot be combined with other values`},
		{"option reserved_ports ''", f + `:4: option reserved_ports: empty value`},
		{"list reserved_ports 22/tcp\n\n\tlist reserved_ports 'x/udp'", f + `:6: option reserved_ports: "x/udp"` + usage},
		{"list reserved_ports 22/tcp\n\tlist reserved_ports none", f + `:5: option reserved_ports: "none" cannot be combined with other values`},
	}
	for _, tt := range tests {
		t.Run(tt.lines, func(t *testing.T) {
			c, err := fromString(t, minimal+"\t"+tt.lines+"\n")
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("FromFile = %+v, %v; want *Error", c, err)
			}
			if err.Error() != tt.want {
				t.Fatalf("error\n got %s\nwant %s", err, tt.want)
			}
		})
	}
}
