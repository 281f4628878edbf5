package main

// dpfd as an rpcd exec plugin. rpcd runs every executable in
// /usr/libexec/rpcd/ and publishes it as a ubus object named after the file;
// files/usr/libexec/rpcd/dpf execs "dpfd rpcd", so the object is "dpf":
//
//	ubus call dpf status
//	ubus call dpf leases
//	ubus call dpf delete '{"proto":"tcp","ext_port":8080}'
//	ubus call dpf delete '{"client":"198.51.100.2"}'
//
// The exec plugin protocol (rpcd's plugin.c):
//
//   - "PLUGIN list" prints one JSON object mapping each method to an object
//     of its arguments; an argument's value stands for its type: a string
//     for a string, 8/16/32/64 for an integer of that width, true for a
//     boolean. rpcd runs it once, when it starts.
//   - "PLUGIN call METHOD" gets the call's arguments as one JSON object on
//     stdin (then EOF) and must print one JSON object on stdout. Anything
//     else (an array, nothing, broken JSON) makes the ubus call fail with
//     a bare status code, so every outcome here, failures included, is an
//     object: {"error": "..."} when something went wrong, exit status 0.
//     stderr is discarded.
//
// The plugin only talks to the running daemon over its control socket
// (found through the socket option of -c FILE); it never reads the firewall
// or the lease store itself.

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dpf-router/dpf/src/config"
	"github.com/dpf-router/dpf/src/control"
	"github.com/dpf-router/dpf/src/firewall"
)

// Methods of the ubus object "dpf".
const (
	rpcdStatus = "status" // no arguments; result: control.Status
	rpcdLeases = "leases" // no arguments; result: {"leases": [control.Lease...]}
	rpcdDelete = "delete" // {proto, ext_port} or {client}; result: {"deleted": [control.Lease...]}
)

// rpcdSignature is what "dpfd rpcd list" prints. ext_port is an int32 for
// rpcd (32), not an int16: blobmsg has no unsigned types, so 16 bits would
// not hold ports above 32767.
var rpcdSignature = map[string]map[string]any{
	rpcdStatus: {},
	rpcdLeases: {},
	rpcdDelete: {"proto": "str", "ext_port": 32, "client": "str"},
}

// errRPCDNotRunning is the error text every method answers with when no
// daemon listens on the control socket. LuCI shows it as it is.
const errRPCDNotRunning = "dpfd is not running"

// maxRPCDArgs bounds what is read from stdin; real arguments are tiny.
const maxRPCDArgs = 64 << 10

const rpcdUsage = `usage: dpfd rpcd [-c FILE] list
       dpfd rpcd [-c FILE] call METHOD   (arguments: a JSON object on stdin)

The rpcd exec plugin behind the ubus object "dpf"; rpcd runs it through
/usr/libexec/rpcd/dpf. Methods: status, leases, delete.
`

// runRPCD is "dpfd rpcd ARGS". It fails (exit 2) only on a malformed command
// line; a call always prints a JSON object and exits 0.
func runRPCD(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpfd rpcd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfgPath := fs.String("c", defaultConfig, "configuration file (UCI format), for the control socket's path")
	if err := fs.Parse(reorder(args)); err != nil {
		return exitUsage
	}
	switch {
	case fs.NArg() == 1 && fs.Arg(0) == "list":
		return writeRPCD(stdout, rpcdSignature)
	case fs.NArg() == 2 && fs.Arg(0) == "call":
		return writeRPCD(stdout, rpcdCall(*cfgPath, fs.Arg(1), stdin))
	}
	fmt.Fprint(stderr, rpcdUsage)
	return exitUsage
}

func writeRPCD(w io.Writer, v any) int {
	if err := json.NewEncoder(w).Encode(v); err != nil {
		return exitFailure
	}
	return exitOK
}

// rpcdError is the object a failed call prints.
func rpcdError(err error) map[string]string {
	if errors.Is(err, control.ErrNotRunning) {
		return map[string]string{"error": errRPCDNotRunning}
	}
	return map[string]string{"error": err.Error()}
}

// rpcdCall answers one call with the value to print, always a JSON object.
func rpcdCall(cfgPath, method string, stdin io.Reader) any {
	if _, ok := rpcdSignature[method]; !ok {
		return rpcdError(fmt.Errorf("unknown method %q", method))
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		return rpcdError(err)
	}
	switch method {
	case rpcdStatus:
		var st control.Status
		if err := control.Call(cfg.Socket, control.MethodStatus, nil, &st); err != nil {
			return rpcdError(err)
		}
		return st
	case rpcdLeases:
		ls := []control.Lease{}
		if err := control.Call(cfg.Socket, control.MethodList, nil, &ls); err != nil {
			return rpcdError(err)
		}
		if ls == nil { // the daemon answered null
			ls = []control.Lease{}
		}
		return map[string][]control.Lease{"leases": ls}
	default: // rpcdDelete
		// Only delete reads stdin: status and leases take no
		// arguments, so they never wait for an EOF.
		args, err := readRPCDArgs(stdin)
		if err != nil {
			return rpcdError(err)
		}
		p, err := rpcdDeleteParams(args)
		if err != nil {
			return rpcdError(err)
		}
		ls := []control.Lease{}
		if err := control.Call(cfg.Socket, control.MethodDelete, p, &ls); err != nil {
			return rpcdError(err)
		}
		if ls == nil {
			ls = []control.Lease{}
		}
		return map[string][]control.Lease{"deleted": ls}
	}
}

// readRPCDArgs reads the call's arguments: one JSON object, or nothing.
func readRPCDArgs(r io.Reader) (map[string]json.RawMessage, error) {
	if r == nil {
		return nil, nil
	}
	b, err := io.ReadAll(io.LimitReader(r, maxRPCDArgs+1))
	if err != nil {
		return nil, fmt.Errorf("reading arguments: %w", err)
	}
	if len(b) > maxRPCDArgs {
		return nil, errors.New("arguments too large")
	}
	if strings.TrimSpace(string(b)) == "" {
		return nil, nil
	}
	var args map[string]json.RawMessage
	if err := json.Unmarshal(b, &args); err != nil {
		return nil, fmt.Errorf("arguments: want a JSON object: %w", err)
	}
	return args, nil
}

// rpcdDeleteParams checks delete's arguments: either client, or proto and
// ext_port. ext_port may also be a string of digits, as HTML forms send it.
func rpcdDeleteParams(args map[string]json.RawMessage) (control.DeleteParams, error) {
	var p control.DeleteParams
	str := func(name string) (string, error) {
		raw, ok := args[name]
		if !ok || string(raw) == "null" {
			return "", nil
		}
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", fmt.Errorf("%s: want a string", name)
		}
		return s, nil
	}
	client, err := str("client")
	if err != nil {
		return p, err
	}
	proto, err := str("proto")
	if err != nil {
		return p, err
	}
	port, hasPort, err := rpcdPort(args["ext_port"])
	if err != nil {
		return p, err
	}
	switch {
	case client != "" && (proto != "" || hasPort):
		return p, errors.New("give either client, or proto and ext_port, not both")
	case client != "":
		p.Client = client
		return p, nil
	case proto == "" || !hasPort:
		return p, errors.New("give proto and ext_port, or client")
	}
	if _, err := firewall.ParseProto(proto); err != nil {
		return p, err
	}
	p.Proto, p.ExternalPort = strings.ToLower(proto), port
	return p, nil
}

// rpcdPort reads ext_port: a JSON number or a string of digits, 1-65535.
func rpcdPort(raw json.RawMessage) (port uint16, ok bool, err error) {
	s := strings.TrimSpace(string(raw))
	if s == "" || s == "null" {
		return 0, false, nil
	}
	if strings.HasPrefix(s, `"`) {
		if err := json.Unmarshal(raw, &s); err != nil {
			return 0, false, errors.New("ext_port: want a number")
		}
	}
	n, err := strconv.ParseUint(strings.TrimSpace(s), 10, 16)
	if err != nil || n == 0 {
		return 0, false, fmt.Errorf("ext_port %s: want 1-65535", s)
	}
	return uint16(n), true, nil
}
