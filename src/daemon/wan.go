package daemon

// WAN address changes. The kernel's address notifications (rtnetlink) make
// dpfd read the external address within a fraction of a second of a change;
// the 5 s poll in watch stays as the backstop (for notifications lost, and
// for systems without them). When the address changes, updateExternal
// stores and publishes it (status, D-Bus) and calls externalChangedLocked,
// which tells the clients: the epoch starts again at 0 and the server
// announces the new address on the LAN (server/epoch.go). The pinholes keep
// working as they are: their rules match the WAN interface, never the
// address.

import (
	"context"
	"errors"
	"net/netip"
	"sync"
	"time"

	"github.com/dpf-router/dpf/src/internal/ifaddr"
)

const (
	// wanDebounce lets the notifications of one change arrive before the
	// address is read: a new DHCP lease or `ip addr del; ip addr add` is
	// a deletion then an addition, and reading between the two would
	// see no address for a moment.
	wanDebounce = 100 * time.Millisecond
	// wanWatchRetry is how long after the notification socket failed it
	// is opened again; the poll in watch covers meanwhile.
	wanWatchRetry = 5 * time.Second
)

// wanState serialises updateExternal and remembers the last valid
// external address.
type wanState struct {
	mu sync.Mutex
	// last is the last valid external address seen, kept while the
	// address is gone, so that a WAN that goes down and comes back with
	// the same address is not taken for a change. Guarded by mu.
	last netip.Addr
}

// externalChangedLocked acts on the external address addr that
// updateExternal just read (d.wan.mu held):
//
//   - gone (WAN down): nothing; requests get NETWORK_FAILURE meanwhile,
//     since the server asks for the address at each request;
//   - back, the same as before: nothing either. Every mapping clients hold
//     is still right (same address, and the pinholes never left), so the
//     epoch goes on: resetting it would only make every client re-create
//     its mappings for nothing;
//   - the first address since dpfd started without one: announce it, so
//     that clients that got NETWORK_FAILURE learn it now;
//   - a new address: reset the epoch (saved, so that a restart continues
//     from the reset) and announce. The address is saved too: New resets
//     the epoch when it finds another one at start, and takes the saved one
//     as "before" when the WAN is still down then.
func (d *Daemon) externalChangedLocked(addr netip.Addr) {
	prev := d.wan.last
	if !addr.IsValid() || addr == prev {
		return
	}
	d.wan.last = addr
	if d.srv == nil {
		return // New: the server does not exist yet and will announce at start
	}
	if d.store != nil { // nil only in tests of other parts
		if err := d.store.SaveExternal(addr); err != nil {
			d.log.Warn("saving the external address", "err", err)
		}
	}
	if !prev.IsValid() {
		n := d.srv.Announce()
		d.log.Info("external address acquired; announced on the LAN", "addr", addr.String(), "sockets", n)
		return
	}
	d.srv.ResetEpoch()
	if d.store != nil { // nil only in tests of other parts
		if err := d.store.SaveEpoch(d.srv.Epoch(), time.Now()); err != nil {
			d.log.Warn("saving epoch", "err", err)
		}
	}
	n := d.srv.Announce()
	d.log.Warn("external address changed: epoch reset to 0, new address announced on the LAN",
		"addr", addr.String(), "previous", prev.String(), "sockets", n, "leases", d.m.Len())
}

// watchWAN reads the external address again shortly after each IPv4
// address change the kernel reports, until ctx is done. Run owns it.
func (d *Daemon) watchWAN(ctx context.Context) {
	kick := make(chan struct{}, 1)
	notify := func([]ifaddr.Change) {
		// Any change: reading the WAN interface's addresses is cheap,
		// and a WAN that is re-created gets a new index.
		select {
		case kick <- struct{}{}:
		default:
		}
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() { defer wg.Done(); d.followAddresses(ctx, notify) }()
	for {
		select {
		case <-ctx.Done():
			return
		case <-kick:
		}
		t := time.NewTimer(wanDebounce)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		select { // notifications meanwhile are covered by this read
		case <-kick:
		default:
		}
		d.updateExternal()
	}
}

// followAddresses subscribes to address changes and calls notify for each
// until ctx is done, subscribing again after a failure.
func (d *Daemon) followAddresses(ctx context.Context, notify func([]ifaddr.Change)) {
	for {
		w, err := ifaddr.NewWatcher()
		if errors.Is(err, errors.ErrUnsupported) {
			return // the poll in watch does it all
		}
		if err == nil {
			// A change may have come before the subscription.
			notify(nil)
			if err = w.Run(ctx, notify); err == nil {
				return // ctx is done
			}
		}
		d.log.Warn("following address changes; polling every "+watchInterval.String()+" meanwhile", "err", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wanWatchRetry):
		}
	}
}
