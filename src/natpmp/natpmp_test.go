package natpmp

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// captureNatpmpcTCP is what `natpmpc -a 8080 8080 tcp 3600` (libnatpmp)
// sends to the gateway: a TCP mapping request (RFC 6886 section 3.3).
var captureNatpmpcTCP = []byte{
	0x00,       // version 0
	0x02,       // opcode 2: map TCP
	0x00, 0x00, // reserved
	0x1f, 0x90, // internal port 8080
	0x1f, 0x90, // suggested external port 8080
	0x00, 0x00, 0x0e, 0x10, // requested lifetime 3600 s
}

func TestParseRequestVectors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want Request
	}{
		{"natpmpc map tcp", captureNatpmpcTCP, Request{Op: OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600}},
		{"public address", []byte{
			0x00, // version
			0x00, // opcode 0: public address
		}, Request{Op: OpPublicAddress}},
		{"public address with trailing bytes", []byte{0x00, 0x00, 0xde, 0xad}, Request{Op: OpPublicAddress}},
		{"map udp delete all", []byte{
			0x00, 0x01, // version 0, opcode 1: map UDP
			0xff, 0xff, // reserved, ignored
			0x00, 0x00, // internal port 0
			0x00, 0x00, // suggested external port 0
			0x00, 0x00, 0x00, 0x00, // lifetime 0: delete
		}, Request{Op: OpMapUDP}},
		{"map udp trailing", []byte{
			0x00, 0x01, 0x00, 0x00,
			0x04, 0xd2, // internal port 1234
			0x16, 0x2e, // suggested external port 5678
			0x00, 0x00, 0x1c, 0x20, // lifetime 7200
			0x99, 0x99, // trailing garbage, ignored
		}, Request{Op: OpMapUDP, InternalPort: 1234, SuggestedExternalPort: 5678, Lifetime: 7200}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.in)
			if err != nil {
				t.Fatalf("ParseRequest: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ParseRequest = %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestParseRequestErrors(t *testing.T) {
	tests := []struct {
		name   string
		in     []byte
		err    error
		wantOp uint8
	}{
		{"nil", nil, ErrShort, 0},
		{"one byte", []byte{0x00}, ErrShort, 0},
		{"response bit", []byte{0x00, 0x80}, ErrResponse, 0},
		{"response bit map", []byte{0x00, 0x82, 0, 0, 0, 1, 0, 1, 0, 0, 0, 1}, ErrResponse, 0},
		{"version 1", []byte{0x01, 0x00}, ErrUnsupportedVersion, 0},
		{"pcp version 2 map", []byte{0x02, 0x01}, ErrUnsupportedVersion, 1},
		{"unknown opcode 3", []byte{0x00, 0x03}, ErrUnsupportedOpcode, 3},
		{"unknown opcode 127", []byte{0x00, 0x7f, 0, 0}, ErrUnsupportedOpcode, 127},
		{"map udp 11 bytes", []byte{0x00, 0x01, 0, 0, 0, 1, 0, 1, 0, 0, 0}, ErrShort, 0},
		{"map tcp 2 bytes", []byte{0x00, 0x02}, ErrShort, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseRequest(tt.in)
			if !errors.Is(err, tt.err) {
				t.Fatalf("ParseRequest err = %v, want %v", err, tt.err)
			}
			if got.Op != tt.wantOp {
				t.Fatalf("ParseRequest Op = %d, want %d", got.Op, tt.wantOp)
			}
		})
	}
}

func TestRequestAppendTo(t *testing.T) {
	r := Request{Op: OpMapTCP, InternalPort: 8080, SuggestedExternalPort: 8080, Lifetime: 3600}
	if got := r.AppendTo(nil); !bytes.Equal(got, captureNatpmpcTCP) {
		t.Fatalf("AppendTo = % x, want % x", got, captureNatpmpcTCP)
	}
	if got := (Request{Op: OpPublicAddress, Lifetime: 9}).AppendTo([]byte{0xaa}); !bytes.Equal(got, []byte{0xaa, 0x00, 0x00}) {
		t.Fatalf("AppendTo public address = % x", got)
	}
}

func TestResponseAppendTo(t *testing.T) {
	tests := []struct {
		name string
		in   Response
		want []byte
	}{
		{"public address", Response{Op: OpPublicAddress, Epoch: 0x01020304, ExternalAddr: netip.MustParseAddr("203.0.113.7")}, []byte{
			0x00,       // version
			0x80,       // opcode 128+0
			0x00, 0x00, // result success
			0x01, 0x02, 0x03, 0x04, // epoch
			203, 0, 113, 7, // external address
		}},
		{"public address mapped input", Response{Op: OpPublicAddress, ExternalAddr: netip.MustParseAddr("::ffff:198.51.100.1")}, []byte{
			0x00, 0x80, 0x00, 0x00, 0, 0, 0, 0, 198, 51, 100, 1,
		}},
		{"public address error hides address", Response{Op: OpPublicAddress, Result: ResultNetworkFailure, Epoch: 5, ExternalAddr: netip.MustParseAddr("203.0.113.7")}, []byte{
			0x00, 0x80,
			0x00, 0x03, // result 3: network failure
			0, 0, 0, 5,
			0, 0, 0, 0, // address zero on error
		}},
		{"public address ipv6 writes zero", Response{Op: OpPublicAddress, ExternalAddr: netip.MustParseAddr("2001:db8::1")}, []byte{
			0x00, 0x80, 0x00, 0x00, 0, 0, 0, 0, 0, 0, 0, 0,
		}},
		{"map tcp", Response{Op: OpMapTCP, Epoch: 100, InternalPort: 8080, ExternalPort: 40000, Lifetime: 3600}, []byte{
			0x00,       // version
			0x82,       // opcode 128+2
			0x00, 0x00, // result success
			0x00, 0x00, 0x00, 0x64, // epoch 100
			0x1f, 0x90, // internal port 8080
			0x9c, 0x40, // mapped external port 40000
			0x00, 0x00, 0x0e, 0x10, // lifetime 3600
		}},
		{"unsupported opcode full size", Response{Op: 9, Result: ResultUnsupportedOpcode, Epoch: 1}, []byte{
			0x00, 0x89, // version, 128+9
			0x00, 0x05, // result 5
			0, 0, 0, 1, // epoch
			0, 0, 0, 0, 0, 0, 0, 0, // ports and lifetime zero
		}},
		{"unsupported version map full size", Response{Op: OpMapUDP, Result: ResultUnsupportedVersion}, []byte{
			0x00, 0x81, 0x00, 0x01, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.in.AppendTo(nil)
			if !bytes.Equal(got, tt.want) {
				t.Fatalf("AppendTo = % x\nwant       % x", got, tt.want)
			}
		})
	}
}

func TestParseResponse(t *testing.T) {
	ok := []struct {
		name string
		in   []byte
		want Response
	}{
		{"public address", []byte{0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x10, 0x00, 192, 0, 2, 1},
			Response{Op: OpPublicAddress, Epoch: 4096, ExternalAddr: netip.MustParseAddr("192.0.2.1")}},
		{"public address error drops address", []byte{0x00, 0x80, 0x00, 0x03, 0, 0, 0, 1, 192, 0, 2, 1},
			Response{Op: OpPublicAddress, Result: ResultNetworkFailure, Epoch: 1}},
		{"map udp", []byte{0x00, 0x81, 0x00, 0x00, 0, 0, 0, 7, 0x04, 0xd2, 0x04, 0xd3, 0, 0, 0x0e, 0x10, 0xff},
			Response{Op: OpMapUDP, Epoch: 7, InternalPort: 1234, ExternalPort: 1235, Lifetime: 3600}},
	}
	for _, tt := range ok {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseResponse(tt.in)
			if err != nil {
				t.Fatalf("ParseResponse: %v", err)
			}
			if got != tt.want {
				t.Fatalf("ParseResponse = %+v, want %+v", got, tt.want)
			}
		})
	}
	bad := []struct {
		name string
		in   []byte
		err  error
	}{
		{"empty", nil, ErrShort},
		{"public address 11 bytes", []byte{0x00, 0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrShort},
		{"map 15 bytes", []byte{0x00, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrShort},
		{"unknown op 12 bytes", []byte{0x00, 0x85, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrShort},
		{"request", captureNatpmpcTCP, ErrNotResponse},
		{"pcp version", []byte{0x02, 0x81, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, ErrUnsupportedVersion},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ParseResponse(tt.in); !errors.Is(err, tt.err) {
				t.Fatalf("ParseResponse err = %v, want %v", err, tt.err)
			}
		})
	}
}

func TestRoundTrip(t *testing.T) {
	reqs := []Request{
		{Op: OpPublicAddress},
		{Op: OpMapUDP, InternalPort: 1, SuggestedExternalPort: 65535, Lifetime: 0xffffffff},
		{Op: OpMapTCP, InternalPort: 22},
	}
	for _, r := range reqs {
		got, err := ParseRequest(r.AppendTo(nil))
		if err != nil || got != r {
			t.Errorf("request round trip %+v: got %+v, %v", r, got, err)
		}
	}
	resps := []Response{
		{Op: OpPublicAddress, Epoch: 42, ExternalAddr: netip.MustParseAddr("100.64.0.1")},
		{Op: OpPublicAddress, Result: ResultNotAuthorized},
		{Op: OpMapTCP, Result: ResultOutOfResources, Epoch: 3, InternalPort: 80},
		{Op: 77, Result: ResultUnsupportedOpcode, Epoch: 9},
	}
	for _, r := range resps {
		got, err := ParseResponse(r.AppendTo(nil))
		if err != nil || got != r {
			t.Errorf("response round trip %+v: got %+v, %v", r, got, err)
		}
	}
}
