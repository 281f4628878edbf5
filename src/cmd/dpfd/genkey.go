package main

import (
	"crypto/rand"
	"flag"
	"fmt"
	"io"
	"regexp"

	"github.com/dpf-router/dpf/src/pcp"
)

// genkeySize is the size of the keys genkey makes: the length HMAC-SHA256
// needs for its full strength (pcp.MinAuthKeyLen).
const genkeySize = pcp.MinAuthKeyLen

// genkeyNameRE is what a UCI section name may be.
var genkeyNameRE = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// runGenkey prints a fresh random key and the configuration to use it:
//
//	dpfd genkey [NAME]
//
// The key goes into a "config key" section on the router and, on the
// client host, into a file readable only by its owner, for dpf --key-file.
// Nothing is written to disk here: where the key is kept is the user's
// decision.
func runGenkey(args []string, rand io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("dpfd genkey", flag.ContinueOnError)
	fs.SetOutput(stderr)
	quiet := fs.Bool("q", false, "print only the key")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	name := "client"
	switch fs.NArg() {
	case 0:
	case 1:
		name = fs.Arg(0)
	default:
		fmt.Fprintln(stderr, "usage: dpfd genkey [-q] [NAME]")
		return exitUsage
	}
	if !genkeyNameRE.MatchString(name) || name == "any" {
		fmt.Fprintf(stderr, "dpfd genkey: %q cannot name a UCI section: use letters, digits and _\n", name)
		return exitUsage
	}
	key := make([]byte, genkeySize)
	if _, err := io.ReadFull(rand, key); err != nil {
		fmt.Fprintln(stderr, "dpfd genkey: reading random bytes:", err)
		return exitFailure
	}
	k := pcp.FormatAuthKey(key)
	if *quiet {
		fmt.Fprintln(stdout, k)
		return exitOK
	}
	fmt.Fprintf(stdout, `# On the router, add to /etc/config/dpf (and set option auth to
# 'optional' or 'required' in config dpf 'main'), then dpfd reload:
config key '%[1]s'
	option secret '%[2]s'
	#list address '<the host's address, to allow the key only from there>'

# On the host, keep the key in a file only its user can read:
#   umask 077; mkdir -p ~/.config/dpf; echo %[2]s > ~/.config/dpf/key
# and use it:   dpf --key-file ~/.config/dpf/key expose tcp 443
# (or set DPF_KEY_FILE=~/.config/dpf/key).
`, name, k)
	return exitOK
}

// genkeyRand is where genkey gets its randomness; tests replace it.
var genkeyRand io.Reader = rand.Reader
