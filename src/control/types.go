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
	Counters        map[string]uint64 `json:"counters"`
	// Runtime is the daemon process's resource use (for leak checks and
	// monitoring).
	Runtime Runtime `json:"runtime"`
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
