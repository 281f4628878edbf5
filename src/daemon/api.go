package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/firewall"
	"github.com/dpf-router/dpf/src/lease"
)

// handle answers control API calls.
func (d *Daemon) handle(ctx context.Context, method string, params json.RawMessage) (any, error) {
	switch method {
	case control.MethodStatus:
		return d.Status(), nil
	case control.MethodList:
		return d.Leases(), nil
	case control.MethodDelete:
		var p control.DeleteParams
		if len(params) > 0 {
			if err := json.Unmarshal(params, &p); err != nil {
				return nil, fmt.Errorf("bad params: %w", err)
			}
		}
		return d.Delete(p)
	case control.MethodReload:
		return d.Reload()
	case control.MethodReconcile:
		return map[string]bool{"ok": true}, d.Reconcile()
	}
	return nil, fmt.Errorf("unknown method %q", method)
}

// Status returns the daemon's state.
func (d *Daemon) Status() control.Status {
	d.mu.Lock()
	cfg, lan := d.cfg, d.lan
	d.mu.Unlock()
	st := control.Status{
		Version:         Version,
		Backend:         d.fw.Name(),
		WANInterface:    cfg.WANInterface,
		ExternalAddress: addrString(d.ExternalAddr()),
		LANInterfaces:   cfg.LANInterfaces,
		Leases:          d.m.Len(),
		MaxLeases:       cfg.MaxLeases,
		Epoch:           d.srv.Epoch(),
		Uptime:          time.Since(d.started).Seconds(),
		DB:              cfg.DB,
		Runtime:         runtimeStats(),
	}
	for _, p := range lan {
		st.LANSubnets = append(st.LANSubnets, p.String())
	}
	for _, a := range d.srv.Listening() {
		st.Listening = append(st.Listening, a.String())
	}
	c, s := d.m.Counters(), d.srv.Stats()
	st.Counters = map[string]uint64{
		control.CounterRequests: s.Received, control.CounterPCP: s.PCP, control.CounterNATPMP: s.NATPMP,
		control.CounterAnswered: s.Answered, control.CounterErrorResponses: s.Errors,
		control.CounterRefused: c.Refused, control.CounterDropped: s.Dropped, control.CounterRateLimited: s.RateLimited,
		control.CounterCreated: c.Created, control.CounterRenewed: c.Renewed,
		control.CounterDeleted: c.Deleted, control.CounterExpired: c.Expired,
		control.CounterFirewallFailures: c.FirewallFailures, control.CounterStoreFailures: c.StoreFailures,
		control.CounterFirewallRepairs: d.healStats.repairs.Load(), // heal.go
	}
	return st
}

func addrString(a netip.Addr) string {
	if !a.IsValid() {
		return ""
	}
	return a.String()
}

// Leases returns every lease in API form.
func (d *Daemon) Leases() []control.Lease {
	now := time.Now()
	ls := d.m.List()
	out := make([]control.Lease, 0, len(ls))
	for _, l := range ls {
		out = append(out, leaseView(l, now))
	}
	return out
}

func leaseView(l lease.Lease, now time.Time) control.Lease {
	v := control.Lease{
		Proto:        l.Proto.String(),
		ExternalPort: l.ExternalPort,
		InternalAddr: l.InternalAddr.String(),
		InternalPort: l.InternalPort,
		Client:       l.Client.String(),
		Origin:       string(l.Origin),
		Auth:         l.Auth,
		Description:  l.Description,
		Lifetime:     int64(l.Lifetime / time.Second),
		Created:      l.Created.UTC().Truncate(time.Second),
		Expires:      l.Expires.UTC().Truncate(time.Second),
		ExpiresIn:    max(0, int64(l.Expires.Sub(now)/time.Second)),
	}
	for _, f := range l.Filters {
		s := f.Prefix.String()
		if f.Port != 0 {
			s += " port " + strconv.Itoa(int(f.Port))
		}
		v.Filters = append(v.Filters, s)
	}
	return v
}

// Delete removes leases at an administrator's request.
func (d *Daemon) Delete(p control.DeleteParams) ([]control.Lease, error) {
	now := time.Now()
	var out []control.Lease
	if p.Client != "" {
		c, err := netip.ParseAddr(p.Client)
		if err != nil {
			return nil, fmt.Errorf("client: %w", err)
		}
		for _, l := range d.m.List() {
			if l.InternalAddr != c && l.Client != c {
				continue
			}
			if del, err := d.m.Delete(l.Key(), "deleted by administrator"); err == nil {
				out = append(out, leaseView(del, now))
			}
		}
		return out, nil
	}
	proto, err := firewall.ParseProto(p.Proto)
	if err != nil {
		return nil, err
	}
	if p.ExternalPort == 0 {
		return nil, fmt.Errorf("ext_port is required")
	}
	del, err := d.m.Delete(lease.Key{Proto: proto, ExternalPort: p.ExternalPort}, "deleted by administrator")
	if err != nil {
		return nil, err
	}
	return append(out, leaseView(del, now)), nil
}
