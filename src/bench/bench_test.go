package bench

import (
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/src/natpmp"
	"github.com/dpf-router/dpf/src/pcp"
)

func TestPercentile(t *testing.T) {
	var ds []time.Duration
	for i := 1; i <= 100; i++ {
		ds = append(ds, time.Duration(i)*time.Millisecond)
	}
	for _, c := range []struct {
		p    float64
		want time.Duration
	}{{50, 50 * time.Millisecond}, {99, 99 * time.Millisecond}, {100, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := Percentile(ds, c.p); got != c.want {
			t.Errorf("p%v = %v, want %v", c.p, got, c.want)
		}
	}
	if Percentile(nil, 50) != 0 {
		t.Error("empty slice: want 0")
	}
}

func TestSpread(t *testing.T) {
	s := spreadOf([]float64{3, 1, 2, 10})
	if s.Median != 2.5 || s.Min != 1 || s.Max != 10 || s.Runs != 4 {
		t.Errorf("spread = %+v", s)
	}
	if got := fmtSpread(spreadOf([]float64{5, 4, 6}), true); got != "5.00 (4.00–6.00)" {
		t.Errorf("fmtSpread = %q", got)
	}
}

func TestPortsPresent(t *testing.T) {
	rules := "tcp dport 10001 dnat to 198.51.100.2:10001\n-A MINIUPNPD -p tcp --dport 10002 -j DNAT\npriority -100"
	want := map[uint16]bool{10001: true, 10002: true, 10003: true}
	if got := portsPresent(rules, want); got != 2 {
		t.Errorf("portsPresent = %d, want 2", got)
	}
}

// TestEncodeMatch: requests the generator sends parse as the right
// messages, and answers are matched to their request.
func TestEncodeMatch(t *testing.T) {
	op := Op{Host: 3, Port: 10042, Lifetime: 120}
	g := &Generator{proto: NATPMP}
	req, err := natpmp.ParseRequest(g.encode(op))
	if err != nil || req.Op != natpmp.OpMapTCP || req.InternalPort != op.Port || req.Lifetime != op.Lifetime {
		t.Fatalf("NAT-PMP request %+v, %v", req, err)
	}
	resp := natpmp.Response{Op: natpmp.OpMapTCP, InternalPort: op.Port, ExternalPort: 20000, Lifetime: 120}.AppendTo(nil)
	if ok, ext, err := g.match(op, resp); !ok || ext != 20000 || err != nil {
		t.Errorf("NAT-PMP match = %v %d %v", ok, ext, err)
	}
	if ok, _, _ := g.match(Op{Host: 3, Port: 1}, resp); ok {
		t.Error("NAT-PMP answer matched another port")
	}

	g = &Generator{proto: PCP}
	preq, err := pcp.ParseRequest(g.encode(op))
	if err != nil || preq.Op != pcp.OpMap || preq.Map.InternalPort != op.Port || preq.Map.Nonce != nonce(3, 10042) {
		t.Fatalf("PCP request %+v, %v", preq, err)
	}
	presp := pcp.Response{Op: pcp.OpMap, Result: pcp.ResultSuccess, Lifetime: 120, Map: preq.Map}.AppendTo(nil)
	if ok, ext, err := g.match(op, presp); !ok || ext != op.Port || err != nil {
		t.Errorf("PCP match = %v %d %v", ok, ext, err)
	}
	refused := pcp.Response{Op: pcp.OpMap, Result: 2, Map: preq.Map}.AppendTo(nil)
	if ok, _, err := g.match(op, refused); !ok || err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("PCP refusal = %v %v", ok, err)
	}
}
