package dbusapi

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/godbus/dbus/v5"
	"github.com/godbus/dbus/v5/prop"

	"github.com/dpf-router/dpf/src/control"
)

// Names on the bus.
const (
	// BusName is the well-known name the Service owns.
	BusName = "org.dpf.Router"
	// Path is the object the Service exports.
	Path = dbus.ObjectPath("/org/dpf/Router")
	// Interface is the object's own interface; the 1 is its version.
	Interface = "org.dpf.Router1"
)

// Timeouts and retry delays.
const (
	// connectTimeout bounds connecting, authenticating, exporting and
	// requesting the name: a bus that accepts the socket but does not
	// answer must not hold the Service forever.
	connectTimeout = 10 * time.Second
	// callTimeout bounds the Service's own calls to the bus while it
	// answers a method call (asking the caller's uid).
	callTimeout = 5 * time.Second
	// retryMin and retryMax bound the wait between connection attempts;
	// it doubles after each failure. A connection that lasted retryMax
	// resets it.
	retryMin = 1 * time.Second
	retryMax = 30 * time.Second
	// maxQueue bounds the notices waiting to be sent; see post.
	maxQueue = 1024
)

// ErrNameTaken is returned (wrapped) when another connection owns BusName.
var ErrNameTaken = errors.New("name already owned by another connection")

// Backend is what the Service needs from the daemon. Its methods are called
// from the goroutines that answer method calls, concurrently.
type Backend interface {
	// Status returns the daemon's state.
	Status() control.Status
	// Leases returns every lease.
	Leases() []control.Lease
	// Delete deletes one lease (Proto and ExternalPort) or every lease
	// of a client (Client), as the control API does, and returns the
	// deleted leases. A lease that does not exist is not an error: it
	// returns none.
	Delete(p control.DeleteParams) ([]control.Lease, error)
}

// Config configures a Service.
type Config struct {
	// Address is the bus's D-Bus address. Empty means the system bus:
	// $DBUS_SYSTEM_BUS_ADDRESS, else
	// unix:path=/var/run/dbus/system_bus_socket (the D-Bus convention,
	// applied by godbus).
	Address string
	// Backend answers the method calls; required.
	Backend Backend
	// IsAdmin reports whether a caller running as uid may delete
	// leases. Nil means only root (uid 0).
	IsAdmin func(uid uint32) bool
	// Optional says the bus may well be absent (option dbus 'auto'):
	// failures to connect are logged at info level once, then at debug
	// level, instead of as warnings.
	Optional bool
	// Logger receives the Service's messages; nil discards them.
	Logger *slog.Logger
}

// Service is dpfd's D-Bus interface (see the package comment). Create it
// with New, optionally call Connect, then Run; LeaseAdded, LeaseRemoved and
// SetExternalAddress may be called at any time from any goroutine and never
// block.
type Service struct {
	cfg  Config
	log  *slog.Logger
	wake chan struct{}

	mu sync.Mutex
	// live is set while connected: only then are notices queued, since
	// a client that was not connected must re-read the state anyway.
	live    bool
	queue   []notice
	dropped int            // notices dropped since the last drain
	first   *session       // made by Connect, served by Run
	stopped bool           // Run returned: method calls are refused
	calls   sync.WaitGroup // method calls being answered
}

// notice is a change to report on the bus: a signal, a property, or both.
type notice struct {
	member string                  // signal of Interface to emit; "" for none
	arg    map[string]dbus.Variant // the signal's argument
	prop   string                  // property of Interface to set; "" for none
	value  any
}

// New returns a Service; it does not connect yet.
func New(cfg Config) *Service {
	s := &Service{cfg: cfg, log: cfg.Logger, wake: make(chan struct{}, 1)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	if s.cfg.IsAdmin == nil {
		s.cfg.IsAdmin = func(uid uint32) bool { return uid == 0 }
	}
	return s
}

// Connect connects to the bus, exports the object and owns BusName, once,
// for a caller that must not run without the bus (option dbus '1'): it
// returns the error instead of retrying. Run then serves that connection.
// Calling Run without Connect is fine: Run connects itself.
func (s *Service) Connect(ctx context.Context) error {
	sess, err := s.connect(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	if s.first != nil {
		s.first.close()
	}
	s.first = sess
	s.mu.Unlock()
	return nil
}

// Run serves the bus until ctx is done: it connects (again after a failure
// or a lost connection, waiting between retryMin and retryMax), answers
// method calls and sends the notices. When it returns the connection is
// closed and no method call is still being answered.
func (s *Service) Run(ctx context.Context) {
	s.mu.Lock()
	sess := s.first
	s.first = nil
	s.mu.Unlock()
	defer s.stop()

	delay := retryMin
	failures := 0
	for {
		if sess == nil {
			var err error
			sess, err = s.connect(ctx)
			if err != nil {
				if ctx.Err() != nil {
					return
				}
				s.logFailure(failures, err, delay)
				failures++
				if !sleep(ctx, delay) {
					return
				}
				delay = min(2*delay, retryMax)
				continue
			}
			if failures > 0 {
				s.log.Info("D-Bus: connected", "name", BusName, "attempts", failures+1)
			}
			failures = 0
		}
		start := time.Now()
		s.serve(ctx, sess)
		sess.close()
		sess = nil
		if ctx.Err() != nil {
			return
		}
		if time.Since(start) >= retryMax {
			delay = retryMin
		}
		s.log.Warn("D-Bus: connection to the bus lost; reconnecting", "retry_in", delay.String())
		if !sleep(ctx, delay) {
			return
		}
		delay = min(2*delay, retryMax)
	}
}

func (s *Service) logFailure(failures int, err error, delay time.Duration) {
	switch {
	case failures > 0:
		s.log.Debug("D-Bus: still cannot connect", "err", err, "retry_in", delay.String())
	case s.cfg.Optional:
		s.log.Info("D-Bus: no usable bus; running without it and retrying quietly", "err", err)
	default:
		s.log.Warn("D-Bus: cannot connect; retrying", "err", err, "retry_in", delay.String())
	}
}

// sleep waits d or until ctx is done; it reports whether ctx is still live.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// Close ends a Service that Run will not serve, for a caller whose start-up
// fails after Connect: it closes the connection, refuses new method calls
// and waits for those being answered. Run does the same when it returns;
// after either, the Service cannot be used again.
func (s *Service) Close() { s.stop() }

// stop ends the Service: no more notices are queued, new method calls are
// refused and those being answered are waited for.
func (s *Service) stop() {
	s.mu.Lock()
	s.live, s.queue, s.stopped = false, nil, true
	if s.first != nil {
		s.first.close()
		s.first = nil
	}
	s.mu.Unlock()
	s.calls.Wait()
}

// session is one connection with its exported object.
type session struct {
	conn   *dbus.Conn
	props  *prop.Properties
	cancel context.CancelFunc
}

func (ss *session) close() {
	ss.conn.Close()
	ss.cancel()
}

// connect dials the bus, exports the object and requests the name, all
// within connectTimeout.
func (s *Service) connect(ctx context.Context) (_ *session, err error) {
	cctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(connectTimeout, cancel)
	var conn *dbus.Conn
	defer func() {
		if !timer.Stop() && err == nil {
			err = fmt.Errorf("connecting to the bus: timed out after %v", connectTimeout)
		}
		if err != nil {
			s.setLive(false)
			if conn != nil {
				conn.Close()
			}
			cancel()
		}
	}()
	// The connection closes itself when cctx ends: at a timeout now, or
	// when the session is closed or ctx is done.
	if s.cfg.Address == "" {
		conn, err = dbus.ConnectSystemBus(dbus.WithContext(cctx))
	} else {
		conn, err = dbus.Connect(s.cfg.Address, dbus.WithContext(cctx))
	}
	if err != nil {
		return nil, fmt.Errorf("connecting to the bus: %w", err)
	}
	if err := conn.Export(&object{s: s, conn: conn}, Path, Interface); err != nil {
		return nil, fmt.Errorf("exporting %s: %w", Path, err)
	}
	// From here on changes are queued, so that none falls between the
	// state read below and the first notice sent.
	s.setLive(true)
	st := s.cfg.Backend.Status()
	props, err := prop.Export(conn, Path, prop.Map{Interface: {
		"ExternalAddress": {Value: st.ExternalAddress, Emit: prop.EmitTrue},
		"LeaseCount":      {Value: clampU32(int64(st.Leases)), Emit: prop.EmitTrue},
		"Backend":         {Value: st.Backend, Emit: prop.EmitConst},
	}})
	if err != nil {
		return nil, fmt.Errorf("exporting properties: %w", err)
	}
	for path, node := range introspection(props) {
		if err := conn.Export(node, path, "org.freedesktop.DBus.Introspectable"); err != nil {
			return nil, fmt.Errorf("exporting introspection of %s: %w", path, err)
		}
	}
	reply, err := conn.RequestName(BusName, dbus.NameFlagDoNotQueue)
	if err != nil {
		return nil, fmt.Errorf("requesting name %s: %w", BusName, err)
	}
	if reply != dbus.RequestNameReplyPrimaryOwner && reply != dbus.RequestNameReplyAlreadyOwner {
		return nil, fmt.Errorf("requesting name %s: %w", BusName, ErrNameTaken)
	}
	s.log.Info("D-Bus: serving", "name", BusName, "path", string(Path), "bus", addressOrSystem(s.cfg.Address))
	return &session{conn: conn, props: props, cancel: cancel}, nil
}

func addressOrSystem(a string) string {
	if a == "" {
		return "system"
	}
	return a
}

func (s *Service) setLive(v bool) {
	s.mu.Lock()
	s.live = v
	if !v {
		s.queue, s.dropped = nil, 0
	}
	s.mu.Unlock()
}

// serve sends the notices until ctx is done or the connection is lost.
func (s *Service) serve(ctx context.Context, sess *session) {
	defer s.setLive(false)
	for {
		select {
		case <-ctx.Done():
			return
		case <-sess.conn.Context().Done():
			return
		case <-s.wake:
			s.drain(sess)
		}
	}
}

// drain sends the queued notices in order.
func (s *Service) drain(sess *session) {
	s.mu.Lock()
	q, dropped := s.queue, s.dropped
	s.queue, s.dropped = nil, 0
	s.mu.Unlock()
	for _, n := range q {
		if n.member != "" {
			if err := sess.conn.Emit(Path, Interface+"."+n.member, n.arg); err != nil {
				s.log.Debug("D-Bus: emitting signal", "signal", n.member, "err", err)
			}
		}
		if n.prop != "" {
			s.setProp(sess, n.prop, n.value)
		}
	}
	if dropped > 0 {
		// The properties may be stale now; re-read them. The lost
		// signals cannot be recovered: clients re-read ListLeases.
		s.log.Warn("D-Bus: the bus is too slow; lease signals were dropped", "dropped", dropped)
		st := s.cfg.Backend.Status()
		s.setProp(sess, "LeaseCount", clampU32(int64(st.Leases)))
		s.setProp(sess, "ExternalAddress", st.ExternalAddress)
	}
}

// setProp changes a property of Interface, emitting PropertiesChanged,
// unless it has the value already.
func (s *Service) setProp(sess *session, name string, v any) {
	if cur, err := sess.props.Get(Interface, name); err == nil && cur.Value() == v {
		return
	}
	// prop.SetMust panics when the signal cannot be sent (the connection
	// just closed); that is an error here, not a crash.
	defer func() {
		if r := recover(); r != nil {
			s.log.Debug("D-Bus: updating property", "property", name, "err", r)
		}
	}()
	sess.props.SetMust(Interface, name, v)
}

// post queues n to be sent. It never blocks: while not connected n is
// dropped (a client connecting later reads the state afresh), and when
// maxQueue notices are already waiting (the bus does not read) n is
// dropped and counted, and the properties are re-read at the next drain.
func (s *Service) post(n notice) {
	s.mu.Lock()
	switch {
	case !s.live:
	case len(s.queue) >= maxQueue:
		s.dropped++
	default:
		s.queue = append(s.queue, n)
	}
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// LeaseAdded reports a new lease: signal LeaseAdded, and LeaseCount becomes
// count (the number of leases after the change).
func (s *Service) LeaseAdded(l control.Lease, count int) {
	s.post(notice{member: "LeaseAdded", arg: leaseDict(l, ""), prop: "LeaseCount", value: clampU32(int64(count))})
}

// LeaseRemoved reports a lease gone for reason: signal LeaseRemoved, and
// LeaseCount becomes count.
func (s *Service) LeaseRemoved(l control.Lease, reason string, count int) {
	s.post(notice{member: "LeaseRemoved", arg: leaseDict(l, reason), prop: "LeaseCount", value: clampU32(int64(count))})
}

// SetExternalAddress reports a new external address ("" when unknown).
func (s *Service) SetExternalAddress(addr string) {
	s.post(notice{prop: "ExternalAddress", value: addr})
}

// enter registers a method call being answered; it reports false once the
// Service has stopped.
func (s *Service) enter() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return false
	}
	s.calls.Add(1)
	return true
}
