//go:build linux

package firewall

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// fakeIPT is an in-memory iptables for unit tests. It knows nothing of rule
// semantics: rules are argument lists, compared exactly.
type fakeIPT struct {
	chains    map[string][][]string // "table/chain" -> rules
	noRestore bool                  // Restore returns ErrUnsupported
	calls     []string              // mutating calls, for counting
}

var _ iptDriver = (*fakeIPT)(nil)

func newFakeIPT() *fakeIPT {
	f := &fakeIPT{chains: make(map[string][][]string)}
	for _, c := range []string{"nat/PREROUTING", "nat/INPUT", "nat/OUTPUT", "nat/POSTROUTING",
		"filter/INPUT", "filter/FORWARD", "filter/OUTPUT"} {
		f.chains[c] = nil
	}
	return f
}

var errFakeNotExist = errors.New("fake iptables: no such chain or rule")

func builtin(chain string) bool {
	return strings.ToUpper(chain) == chain && !strings.Contains(chain, "-")
}

func (f *fakeIPT) ChainExists(table, chain string) (bool, error) {
	_, ok := f.chains[table+"/"+chain]
	return ok, nil
}

func (f *fakeIPT) ClearChain(table, chain string) error {
	f.calls = append(f.calls, "clear "+table+"/"+chain)
	f.chains[table+"/"+chain] = nil
	return nil
}

func (f *fakeIPT) DeleteChain(table, chain string) error {
	f.calls = append(f.calls, "delchain "+table+"/"+chain)
	k := table + "/" + chain
	if _, ok := f.chains[k]; !ok {
		return errFakeNotExist
	}
	if len(f.chains[k]) > 0 {
		return fmt.Errorf("fake iptables: chain %s not empty", k)
	}
	delete(f.chains, k)
	return nil
}

// List prints like `iptables -S CHAIN`, quoting comments as iptables does.
func (f *fakeIPT) List(table, chain string) ([]string, error) {
	rules, ok := f.chains[table+"/"+chain]
	if !ok {
		return nil, errFakeNotExist
	}
	out := []string{"-N " + chain}
	if builtin(chain) {
		out = []string{"-P " + chain + " ACCEPT"}
	}
	for _, r := range rules {
		args := slices.Clone(r)
		for i := range args {
			if i > 0 && args[i-1] == "--comment" {
				args[i] = `"` + args[i] + `"`
			}
		}
		out = append(out, "-A "+chain+" "+strings.Join(args, " "))
	}
	return out, nil
}

func (f *fakeIPT) Exists(table, chain string, spec ...string) (bool, error) {
	rules, ok := f.chains[table+"/"+chain]
	if !ok {
		return false, errFakeNotExist
	}
	return slices.ContainsFunc(rules, func(r []string) bool { return slices.Equal(r, spec) }), nil
}

func (f *fakeIPT) Insert(table, chain string, pos int, spec ...string) error {
	f.calls = append(f.calls, "insert "+table+"/"+chain)
	k := table + "/" + chain
	rules, ok := f.chains[k]
	if !ok || pos < 1 || pos > len(rules)+1 {
		return errFakeNotExist
	}
	f.chains[k] = slices.Insert(rules, pos-1, slices.Clone(spec))
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	f.calls = append(f.calls, "append "+table+"/"+chain)
	k := table + "/" + chain
	if _, ok := f.chains[k]; !ok {
		return errFakeNotExist
	}
	f.chains[k] = append(f.chains[k], slices.Clone(spec))
	return nil
}

func (f *fakeIPT) Delete(table, chain string, spec ...string) error {
	f.calls = append(f.calls, "delete "+table+"/"+chain)
	k := table + "/" + chain
	i := slices.IndexFunc(f.chains[k], func(r []string) bool { return slices.Equal(r, spec) })
	if i < 0 {
		return errFakeNotExist
	}
	f.chains[k] = slices.Delete(f.chains[k], i, i+1)
	return nil
}

// Restore applies `iptables-restore --noflush` input: a chain declaration
// creates or flushes the chain, "-A" appends.
func (f *fakeIPT) Restore(data []byte) error {
	if f.noRestore {
		return ErrUnsupported
	}
	f.calls = append(f.calls, "restore")
	table := ""
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case line == "" || line == "COMMIT":
		case strings.HasPrefix(line, "*"):
			table = line[1:]
		case strings.HasPrefix(line, ":"):
			f.chains[table+"/"+strings.Fields(line[1:])[0]] = nil
		case strings.HasPrefix(line, "-A "):
			args := splitRule(line)
			k := table + "/" + args[1]
			if _, ok := f.chains[k]; !ok {
				return errFakeNotExist
			}
			f.chains[k] = append(f.chains[k], args[2:])
		default:
			return fmt.Errorf("fake iptables-restore: bad line %q", line)
		}
	}
	return nil
}

// dump renders every chain like iptables-save would, sorted by chain.
func (f *fakeIPT) dump() string {
	var keys []string
	for k := range f.chains {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var s strings.Builder
	for _, k := range keys {
		table, chain, _ := strings.Cut(k, "/")
		for _, r := range f.chains[k] {
			fmt.Fprintf(&s, "%s: -A %s %s\n", table, chain, strings.Join(r, " "))
		}
	}
	return s.String()
}
