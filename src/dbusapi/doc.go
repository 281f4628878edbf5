// Package dbusapi offers dpfd's state and lease administration on D-Bus.
//
// A [Service] owns the well-known name org.dpf.Router on the system bus and
// exports the object /org/dpf/Router with the interface org.dpf.Router1:
//
//	methods
//	  Status() -> a{sv}                       the daemon's state (the control API's status)
//	  ListLeases() -> aa{sv}                  every lease, one dictionary each
//	  DeleteLease(s proto, q ext_port) -> u   delete one lease ("tcp" or "udp"); the number deleted, 0 or 1
//	  DeleteClient(s addr) -> u               delete every lease of one host; the number deleted
//	signals
//	  LeaseAdded(a{sv} lease)                 a lease was created
//	  LeaseRemoved(a{sv} lease)               a lease is gone; its "reason" says why
//	properties (org.freedesktop.DBus.Properties, PropertiesChanged emitted)
//	  ExternalAddress s                       the address reported to clients; "" when unknown
//	  LeaseCount u                            number of leases
//	  Backend s                               firewall backend, nftables or iptables (constant)
//
// and org.freedesktop.DBus.Introspectable (also on /, /org and /org/dpf, so
// that busctl tree finds the object) and org.freedesktop.DBus.Peer.
//
// A lease dictionary has the keys of the control API's JSON lease: proto s,
// ext_port q, int_addr s, int_port q, client s, origin s ("pcp" or
// "natpmp"), description s, filters as, lifetime u (seconds granted),
// created x and expires x (Unix seconds), expires_in u (seconds); in
// LeaseRemoved also reason s ("expired", "released by client", "deleted by
// administrator", ...). The Status dictionary has the control API's status
// keys: version s, backend s, wan_interface s, external_address s,
// lan_interfaces as, lan_subnets as, listening as, leases u, max_leases u,
// epoch u, uptime_seconds d, db s, counters a{st}. Clients must ignore keys
// they do not know: more may be added.
//
// Who may do what is the bus policy's business
// (files/usr/share/dbus-1/system.d/org.dpf.Router.conf: anyone may read and
// receive signals, only root may own the name and delete); the Service
// checks the caller's uid for the two Delete methods as well, so that a
// missing or loosened policy file does not let every local user close
// pinholes.
//
// Errors: org.freedesktop.DBus.Error.InvalidArgs for a bad protocol, port
// or address, org.freedesktop.DBus.Error.AccessDenied for a caller that may
// not delete, org.freedesktop.DBus.Error.Failed when the deletion failed.
// Deleting a lease that does not exist is not an error: it returns 0.
//
// The Service survives the bus: when the connection fails or is lost it
// logs that and connects again, waiting between attempts with a bounded
// exponential backoff, and never stops the daemon.
package dbusapi
