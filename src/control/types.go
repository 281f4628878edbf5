package control

import "time"

// Methods of the control API.
const (
	MethodStatus    = "status"    // no params; result Status
	MethodList      = "list"      // no params; result []Lease
	MethodDelete    = "delete"    // params DeleteParams; result []Lease deleted
	MethodReload    = "reload"    // no params; re-reads the configuration file
	MethodReconcile = "reconcile" // no params; re-installs every pinhole
)

// Status describes the running daemon.
type Status struct {
	Version         string            `json:"version"`
	Backend         string            `json:"backend"`
	WANInterface    string            `json:"wan_interface"`
	ExternalAddress string            `json:"external_address"`
	LANInterfaces   []string          `json:"lan_interfaces"`
	LANSubnets      []string          `json:"lan_subnets"`
	Listening       []string          `json:"listening"`
	Leases          int               `json:"leases"`
	MaxLeases       int               `json:"max_leases"`
	Epoch           uint32            `json:"epoch"`
	Uptime          float64           `json:"uptime_seconds"`
	DB              string            `json:"db"`
	Counters        map[string]uint64 `json:"counters"` // keys: CounterNames
	// Runtime is the daemon process's resource use (for leak checks and
	// monitoring).
	Runtime Runtime `json:"runtime"`
}

// The keys of Status.Counters: totals since dpfd started. The daemon
// reports every one of them, zero or not, and no other (a test checks);
// the LuCI Status page has a label for each (another test checks). A
// client should show a key it does not know by its name.
const (
	CounterRequests         = "requests"          // datagrams received on the LAN sockets
	CounterPCP              = "pcp"               // of those, PCP requests
	CounterNATPMP           = "natpmp"            // of those, NAT-PMP requests
	CounterAnswered         = "answered"          // responses sent
	CounterErrorResponses   = "error_responses"   // of those, with an error result code
	CounterRefused          = "refused"           // mappings refused (rules, quotas, ports taken, ...)
	CounterDropped          = "dropped"           // datagrams left unanswered (empty, malformed, responses)
	CounterRateLimited      = "rate_limited"      // datagrams dropped over a host's rate limit
	CounterCreated          = "created"           // leases (pinholes) created
	CounterRenewed          = "renewed"           // leases renewed
	CounterDeleted          = "deleted"           // leases deleted by their client or an administrator
	CounterExpired          = "expired"           // leases that lapsed
	CounterFirewallFailures = "firewall_failures" // requests failed: the firewall refused their pinhole
	CounterStoreFailures    = "store_failures"    // lease writes or deletions the database refused
	CounterFirewallRepairs  = "firewall_repairs"  // checks that found pinholes missing from the kernel and restored them
)

// CounterNames lists the keys of Status.Counters.
var CounterNames = []string{
	CounterRequests, CounterPCP, CounterNATPMP, CounterAnswered, CounterErrorResponses,
	CounterRefused, CounterDropped, CounterRateLimited,
	CounterCreated, CounterRenewed, CounterDeleted, CounterExpired,
	CounterFirewallFailures, CounterStoreFailures, CounterFirewallRepairs,
}

// Runtime is a snapshot of the daemon process's resource use.
type Runtime struct {
	Goroutines int    `json:"goroutines"`
	HeapInuse  uint64 `json:"heap_inuse_bytes"` // Go heap spans in use (runtime.MemStats.HeapInuse)
	RSS        uint64 `json:"rss_bytes"`        // resident set size (VmRSS of /proc/self/status); 0 if unknown
	OpenFDs    int    `json:"open_fds"`         // entries of /proc/self/fd; -1 if unknown
}

// Lease is one mapping as the API shows it.
type Lease struct {
	Proto        string    `json:"proto"`
	ExternalPort uint16    `json:"ext_port"`
	InternalAddr string    `json:"int_addr"`
	InternalPort uint16    `json:"int_port"`
	Client       string    `json:"client"`
	Origin       string    `json:"origin"`
	Auth         string    `json:"auth,omitempty"` // key that authenticated the request that made it; absent: none
	Description  string    `json:"description,omitempty"`
	Filters      []string  `json:"filters,omitempty"`
	Lifetime     int64     `json:"lifetime"`
	Created      time.Time `json:"created"`
	Expires      time.Time `json:"expires"`
	ExpiresIn    int64     `json:"expires_in"`
}

// DeleteParams selects the leases to delete: one by protocol and external
// port, or all of one client (internal address).
type DeleteParams struct {
	Proto        string `json:"proto,omitempty"`
	ExternalPort uint16 `json:"ext_port,omitempty"`
	Client       string `json:"client,omitempty"`
}
