// Package agent runs a legacy program so that every socket it listens on
// gets a pinhole on the router for as long as the socket exists, without
// relinking the program. It is the engine of "dpf run -- PROGRAM ARGS...".
//
// # How sockets are found
//
// Two ways, and the kernel is the judge of both:
//
//   - The preload shim (client/preload/dpf_preload.c, loaded through
//     LD_PRELOAD) reports each listen() on a TCP socket and each bind() of a
//     UDP socket to a port the program chose to the agent's unix socket
//     ($DPF_AGENT_SOCK) and waits for the pinhole, so it is open when the
//     call returns. A UDP bind() to port 0 is not reported and does not
//     wait: libuv, Java and resolvers bind client sockets so; polling judges
//     them. A listen() on a socket bound to port 0 is reported (servers do
//     that). The line protocol is in proto.go.
//   - Polling, every Config.PollInterval and whenever the shim hints that a
//     socket was closed: the kernel's socket list (NETLINK_SOCK_DIAG, package
//     sockdiag) gives the listening TCP and unconnected UDP sockets; the open
//     files of the program's processes (/proc/<pid>/fd) say which of them
//     are the program's. This finds what the shim cannot see: static
//     binaries, Go programs, set-user-ID programs.
//
// A tracked socket lives while the kernel lists a socket with its inode,
// whichever process holds it: across fork, dup, exec and file descriptor
// passing. Sockets on the same protocol, address and port (SO_REUSEPORT
// workers, an IPv4 and a dual-stack socket) share one pinhole, released
// with the last of them.
//
// # When the router says no or does not answer
//
// A failed Map is reported through Config.OnChange and retried with
// exponential backoff (1 s to 1 min) while the socket exists; a socket the
// shim announces makes the tracker try again at once. When the refusal
// says how long to wait (a RetryAfter method: the PCP error lifetime, which
// dpfd makes long for NOT_AUTHORIZED), nothing is retried before that, up
// to 30 min.
//
// When a Map failed because the router could not be reached (the error
// wraps ErrUnreachable or is a timeout), the shim's listen() and bind()
// wait at most 250 ms for their pinholes instead of Config.MapTimeout, for
// 30 s or until a Map reaches the router again, so that a program opening
// many sockets starts without a MapTimeout delay per socket. The tracker
// goes on trying in the background as for any failure.
//
// # What is mapped
//
// TCP sockets in LISTEN and unconnected UDP sockets bound to 0.0.0.0, to a
// dual-stack [::], to ::ffff:a.b.c.d or to a non-loopback IPv4 address of
// this host. A socket bound to a specific address is mapped to that
// address (Mapper.Map gets it), which need not be the host's primary one.
// Never loopback; IPv6-only sockets are skipped (DPF maps IPv4) and logged
// once.
//
// UDP ports of LAN discovery protocols (NetBIOS 137 and 138, SSDP 1900,
// WS-Discovery 3702, mDNS 5353, LLMNR 5355), which media servers, Samba
// and printers bind, are never mapped unless Config.AllowDiscoveryPorts:
// their small queries get large answers, so on the internet they would be
// amplification reflectors. The first such socket on each port is logged
// at info level; the shim gets its SKIP at once.
//
// # The process tree
//
// Run is a child subreaper (PR_SET_CHILD_SUBREAPER), so a daemon that
// detaches from its parent stays below Run. The program's processes are the
// main process, its descendants, and orphans reparented to Run that were
// seen before or carry Run's DPF_AGENT_SOCK value in their environment.
// Run reaps those orphans and only those: other children of the calling
// process are left to their owners.
//
// When the main process exits, Run goes on while a tracked socket exists
// (a pre-fork server whose master exited, a socket handed to an exec'd
// child). If processes of the program remain without one, Run waits 2 s
// for them to open one (a daemon that forks before it binds) and then
// returns, leaving them running.
//
// # Limitations
//
//   - UDP sockets whose port lies in the ephemeral range
//     (/proc/sys/net/ipv4/ip_local_port_range) are not mapped unless the
//     program bound that port by number through the shim: a client socket
//     bound implicitly by sendto() or by bind() to port 0 looks the same as
//     a server socket bound to port 0. Give such servers a fixed port.
//   - Without the shim, listen() and bind() return before the pinhole is
//     open, and a socket may go unnoticed for up to one poll interval.
//   - Set-user-ID, set-group-ID and file-capability programs ignore
//     LD_PRELOAD; Run warns. Polling cannot read the open files of a
//     process of another user unless dpf runs as root.
//   - Processes that clear their environment before they detach, and die
//     before a poll sees them, stay zombies until the caller exits.
//   - A process that changes its user before it listens cannot reach the
//     agent socket (its directory is mode 0700); the shim warns and polling
//     maps the socket (when it may read the process's files).
//   - The program must stay in Run's network namespace; the kernel's socket
//     list is per namespace.
//   - A UDP socket that connect()s is no longer a server: its pinhole is
//     released.
package agent
