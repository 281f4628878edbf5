//go:build linux

package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/coreos/go-iptables/iptables"
)

// iptDriver is the part of go-iptables the backend uses, plus Restore, so a
// fake can stand in (see the tests). Rule specs are argument lists as given
// to iptables, without the chain ("-p", "tcp", ...). List returns rules as
// `iptables -S` prints them ("-A CHAIN ...", preceded by "-N CHAIN" or
// "-P CHAIN POLICY").
type iptDriver interface {
	ChainExists(table, chain string) (bool, error)
	// ClearChain creates chain if missing and flushes it.
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
	List(table, chain string) ([]string, error)
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	Append(table, chain string, rulespec ...string) error
	Delete(table, chain string, rulespec ...string) error
	// Restore feeds data to `iptables-restore --noflush`. It returns
	// ErrUnsupported when there is no iptables-restore.
	Restore(data []byte) error
}

// goIPTables is the real driver: go-iptables, with every call (and the
// processes it starts) run in Config.NetNS when that is set.
type goIPTables struct {
	ipt     *iptables.IPTables
	netns   string
	restore string // path of iptables-restore, "" if none
	nft     bool   // iptables is iptables-nft: its tables are nftables tables
}

var _ iptDriver = (*goIPTables)(nil)

func newGoIPTables(netns string) (*goIPTables, error) {
	d := &goIPTables{netns: netns}
	if _, err := exec.LookPath("iptables"); err != nil {
		return nil, fmt.Errorf("%w: no iptables binary: %v", ErrUnsupported, err)
	}
	err := inNetNS(netns, func() error {
		var err error
		d.ipt, err = iptables.New(iptables.IPFamily(iptables.ProtocolIPv4), iptables.Timeout(iptLockWait))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%w: iptables: %v", ErrUnsupported, err)
	}
	if p, err := exec.LookPath("iptables-restore"); err == nil {
		d.restore = p
	}
	// "iptables v1.8.9 (nf_tables)"; legacy says "(legacy)" or, before
	// 1.8, nothing.
	if out, err := exec.Command("iptables", "--version").Output(); err == nil {
		d.nft = bytes.Contains(out, []byte("nf_tables"))
	}
	return d, nil
}

// iptLockWait is how long, in seconds, iptables waits for the xtables lock
// that another program (fw3, another daemon) may hold while it reloads.
const iptLockWait = 10

func (d *goIPTables) do(f func() error) error { return inNetNS(d.netns, f) }

func (d *goIPTables) ChainExists(table, chain string) (ok bool, err error) {
	err = d.do(func() error { ok, err = d.ipt.ChainExists(table, chain); return err })
	return ok, err
}

func (d *goIPTables) ClearChain(table, chain string) error {
	return d.do(func() error { return d.ipt.ClearChain(table, chain) })
}

func (d *goIPTables) DeleteChain(table, chain string) error {
	return d.do(func() error { return d.ipt.DeleteChain(table, chain) })
}

func (d *goIPTables) List(table, chain string) (rules []string, err error) {
	err = d.do(func() error { rules, err = d.ipt.List(table, chain); return err })
	return rules, err
}

func (d *goIPTables) Exists(table, chain string, spec ...string) (ok bool, err error) {
	err = d.do(func() error { ok, err = d.ipt.Exists(table, chain, spec...); return err })
	return ok, err
}

func (d *goIPTables) Insert(table, chain string, pos int, spec ...string) error {
	return d.do(func() error { return d.ipt.Insert(table, chain, pos, spec...) })
}

func (d *goIPTables) Append(table, chain string, spec ...string) error {
	return d.do(func() error { return d.ipt.Append(table, chain, spec...) })
}

func (d *goIPTables) Delete(table, chain string, spec ...string) error {
	return d.do(func() error { return d.ipt.Delete(table, chain, spec...) })
}

func (d *goIPTables) Restore(data []byte) error {
	if d.restore == "" {
		return ErrUnsupported
	}
	return d.do(func() error {
		cmd := exec.Command(d.restore, "--noflush", "-w", fmt.Sprint(iptLockWait))
		cmd.Stdin = bytes.NewReader(data)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Run(); err != nil {
			return fmt.Errorf("iptables-restore: %w: %s", err, strings.TrimSpace(stderr.String()))
		}
		return nil
	})
}

// isNotExist reports whether err is iptables saying a rule or chain does
// not exist.
func isNotExist(err error) bool {
	var e *iptables.Error
	return errors.As(err, &e) && e.IsNotExist()
}

// splitRule splits one line of `iptables -S` output into arguments,
// undoing iptables-save's double quoting ("--comment \"a b\"").
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	inArg, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inArg = true
		case !quoted && (c == ' ' || c == '\t'):
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteByte(c)
			inArg = true
		}
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args
}
