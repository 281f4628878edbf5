package nattype

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// Short timers keep the tests fast; a filtered test costs maxWait.
const (
	testRTO     = 10 * time.Millisecond
	testMaxWait = 200 * time.Millisecond
)

func testConfig(t *testing.T, s *fakeServer) Config {
	return Config{
		Server:    s.primaryAddr().String(),
		LocalAddr: netip.MustParseAddrPort("127.0.0.1:0"),
		RTO:       testRTO,
		MaxWait:   testMaxWait,
		Timeout:   5 * time.Second,
		Logger:    slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
}

func TestProbeBehaviors(t *testing.T) {
	tests := []struct {
		name          string
		nat           natBehavior
		filter        Behavior
		anyLocal      bool
		wantNoNAT     bool
		wantMapping   Behavior
		wantFiltering Behavior
	}{
		{"open internet", noNAT, Unknown, true, true, EndpointIndependent, EndpointIndependent},
		{"firewalled", noNAT, AddressAndPortDependent, false, true, EndpointIndependent, AddressAndPortDependent},
		{"full cone", natEIM, Unknown, false, false, EndpointIndependent, EndpointIndependent},
		{"restricted cone", natEIM, AddressDependent, false, false, EndpointIndependent, AddressDependent},
		{"port restricted cone", natEIM, AddressAndPortDependent, true, false, EndpointIndependent, AddressAndPortDependent},
		{"address-dependent mapping", natADM, AddressDependent, false, false, AddressDependent, AddressDependent},
		{"symmetric", natAPDM, AddressAndPortDependent, false, false, AddressAndPortDependent, AddressAndPortDependent},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := newFakeServer(t)
			s.nat, s.filter = tt.nat, tt.filter
			s.start()
			cfg := testConfig(t, s)
			if tt.anyLocal {
				cfg.LocalAddr = netip.AddrPort{}
			}
			r, err := Probe(t.Context(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			t.Log(r)
			if r.NoNAT != tt.wantNoNAT || r.Mapping != tt.wantMapping || r.Filtering != tt.wantFiltering {
				t.Errorf("got NoNAT %v mapping %v filtering %v, want %v %v %v",
					r.NoNAT, r.Mapping, r.Filtering, tt.wantNoNAT, tt.wantMapping, tt.wantFiltering)
			}
			if r.Local.Addr() != s.primary || r.Local.Port() == 0 {
				t.Errorf("Local = %v, want 127.0.0.1 and a port", r.Local)
			}
			if want := s.mapped(r.Local, s.primaryAddr()); r.Mapped != want {
				t.Errorf("Mapped = %v, want %v", r.Mapped, want)
			}
			if r.Server != s.primaryAddr() || r.OtherAddr != netip.AddrPortFrom(s.alt, s.aport) {
				t.Errorf("Server %v OtherAddr %v", r.Server, r.OtherAddr)
			}
			if r.MappingReason != "" || r.FilteringReason != "" {
				t.Errorf("unexpected reasons %q %q", r.MappingReason, r.FilteringReason)
			}
		})
	}
}

func TestProbeRetransmits(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natEIM
	s.dropFirst = 2
	s.start()
	r, err := Probe(t.Context(), testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if r.Mapping != EndpointIndependent || r.Filtering != EndpointIndependent {
		t.Errorf("got %v", r)
	}
	// Mapping test I went out three times (twice dropped), then the
	// filtering tests I and II once each.
	if n := s.requestsTo(s.primaryAddr()); n != 3+2 {
		t.Errorf("primary saw %d requests, want 5", n)
	}
}

func TestProbeIgnoresStrayAnswers(t *testing.T) {
	for _, knob := range []string{"other transaction", "unexpected source"} {
		t.Run(knob, func(t *testing.T) {
			s := newFakeServer(t)
			s.nat = natEIM
			s.filter = AddressDependent
			s.stray = knob == "other transaction"
			s.strangerFirst = knob == "unexpected source"
			s.start()
			r, err := Probe(t.Context(), testConfig(t, s))
			if err != nil {
				t.Fatal(err)
			}
			if want := s.mapped(r.Local, s.primaryAddr()); r.Mapped != want {
				t.Errorf("Mapped = %v, want %v (a stray answer was taken)", r.Mapped, want)
			}
			if r.Mapping != EndpointIndependent || r.Filtering != AddressDependent {
				t.Errorf("got %v", r)
			}
		})
	}
}

func TestProbePlainMappedAddress(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natAPDM
	s.plainMapped = true
	s.start()
	r, err := Probe(t.Context(), testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if want := s.mapped(r.Local, s.primaryAddr()); r.Mapped != want || r.Mapping != AddressAndPortDependent {
		t.Errorf("got %v, want mapped %v", r, want)
	}
}

func TestProbeWithoutRFC5780(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natEIM
	s.omitOther = true
	s.start()
	r, err := Probe(t.Context(), testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r)
	if want := s.mapped(r.Local, s.primaryAddr()); r.Mapped != want {
		t.Errorf("Mapped = %v, want %v", r.Mapped, want)
	}
	if r.Mapping != Unknown || r.Filtering != Unknown || r.OtherAddr.IsValid() {
		t.Errorf("got %v", r)
	}
	for _, reason := range []string{r.MappingReason, r.FilteringReason, r.String()} {
		if !strings.Contains(reason, "OTHER-ADDRESS") {
			t.Errorf("reason %q does not mention OTHER-ADDRESS", reason)
		}
	}
}

func TestProbeServerIgnoresChangeRequest(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natEIM
	s.ignoreChange = true
	s.start()
	r, err := Probe(t.Context(), testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	// Answers from the primary address must not count as test II
	// getting through.
	if r.Mapping != EndpointIndependent || r.Filtering != Unknown || !strings.Contains(r.FilteringReason, "CHANGE-REQUEST") {
		t.Errorf("got %v", r)
	}
}

func TestProbeServerRejectsChangeRequest(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natEIM
	s.rejectChange = true
	s.start()
	r, err := Probe(t.Context(), testConfig(t, s))
	if err != nil {
		t.Fatal(err)
	}
	if r.Filtering != Unknown || !strings.Contains(r.FilteringReason, "420") {
		t.Errorf("got %v", r)
	}
}

func TestProbeNoAnswer(t *testing.T) {
	s := newFakeServer(t)
	s.blackhole = true
	s.start()
	start := time.Now()
	r, err := Probe(t.Context(), testConfig(t, s))
	if !errors.Is(err, ErrNoResponse) || r != nil {
		t.Fatalf("got %v, %v; want ErrNoResponse", r, err)
	}
	if d := time.Since(start); d > testMaxWait+time.Second {
		t.Errorf("took %v, want about %v", d, testMaxWait)
	}
	// Requests at 0, RTO, 3 RTO, 7 RTO, 15 RTO fit in 200 ms.
	if n := s.requestsTo(s.primaryAddr()); n != 5 {
		t.Errorf("server saw %d requests, want 5", n)
	}
}

func TestProbeCancelled(t *testing.T) {
	s := newFakeServer(t)
	s.blackhole = true
	s.start()
	cfg := testConfig(t, s)
	cfg.MaxWait = time.Minute
	cfg.Timeout = time.Minute
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := Probe(ctx, cfg)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want the context's", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v after cancellation", d)
	}
}

func TestProbeBudget(t *testing.T) {
	s := newFakeServer(t)
	s.nat = natEIM
	s.filter = AddressAndPortDependent
	s.start()
	cfg := testConfig(t, s)
	cfg.MaxWait = 5 * time.Second
	cfg.Timeout = 500 * time.Millisecond
	start := time.Now()
	r, err := Probe(t.Context(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("took %v, budget was %v", d, cfg.Timeout)
	}
	if r.Mapping != EndpointIndependent || r.Filtering != Unknown || !strings.Contains(r.FilteringReason, "budget") {
		t.Errorf("got %v", r)
	}
}

func TestProbeConfigErrors(t *testing.T) {
	if _, err := Probe(t.Context(), Config{}); !errors.Is(err, ErrNoServer) {
		t.Errorf("empty server: %v", err)
	}
	if _, err := Probe(t.Context(), Config{Server: "127.0.0.1:0"}); err == nil {
		t.Error("port 0 accepted")
	}
	_, err := Probe(t.Context(), Config{Server: "127.0.0.1", LocalAddr: netip.MustParseAddrPort("[::1]:0")})
	if err == nil {
		t.Error("mixed families accepted")
	}
}

func TestResolveServer(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"127.0.0.1", "127.0.0.1:3478"},
		{"127.0.0.1:19302", "127.0.0.1:19302"},
		{"[::1]", "[::1]:3478"},
		{"[::1]:5000", "[::1]:5000"},
		{"::1", "[::1]:3478"},
	}
	for _, tt := range tests {
		got, err := resolveServer(t.Context(), tt.in, netip.AddrPort{})
		if err != nil || got.String() != tt.want {
			t.Errorf("resolveServer(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
		}
	}
}
