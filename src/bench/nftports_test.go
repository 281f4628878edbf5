package bench

import (
	"testing"

	"github.com/google/nftables/expr"
)

// TestDportRule checks what counts as a rule matching a destination port:
// the two bytes at transport offset 2 compared for equality in the same
// register, nothing else.
func TestDportRule(t *testing.T) {
	load := func(off uint32, reg uint32) *expr.Payload {
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
	}
	eq := func(reg uint32, port uint16) *expr.Cmp {
		return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: []byte{byte(port >> 8), byte(port)}}
	}
	ports := map[uint16]bool{}
	dportRule([]expr.Any{&expr.Meta{Key: expr.MetaKeyIIFNAME, Register: 1}, load(2, 1), eq(1, 20001), &expr.Counter{}}, ports)
	dportRule([]expr.Any{load(0, 1), eq(1, 20002)}, ports) // source port
	dportRule([]expr.Any{load(2, 1), eq(2, 20003)}, ports) // other register
	neq := eq(1, 20004)
	neq.Op = expr.CmpOpNeq
	dportRule([]expr.Any{load(2, 1), neq}, ports)
	if len(ports) != 1 || !ports[20001] {
		t.Fatalf("ports %v, want only 20001", ports)
	}
}
