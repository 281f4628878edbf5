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
	// restores are the inputs Restore was given.
	restores []string
	// failRestore, when a table's name, makes Restore fail at that
	// table's COMMIT (the sections before it stay committed).
	failRestore string
	// gen, if set, moves by one with every committed change, as the
	// nftables generation id does under iptables-nft.
	gen *fakeGen
	// lists counts List calls (`iptables -S`, the reads that cost O(N)).
	lists int
	// onRestore, if set, runs at the start of every Restore: a
	// foreign change made while ours runs.
	onRestore func()
}

// bump moves gen, if set, for one committed change.
func (f *fakeIPT) bump() {
	if f.gen != nil {
		f.gen.gen++
	}
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
	f.bump()
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
	f.bump()
	return nil
}

// List prints like `iptables -S CHAIN`, quoting comments as iptables does.
func (f *fakeIPT) List(table, chain string) ([]string, error) {
	f.lists++
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
				args[i] = `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(args[i]) + `"`
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
	f.bump()
	return nil
}

func (f *fakeIPT) Append(table, chain string, spec ...string) error {
	f.calls = append(f.calls, "append "+table+"/"+chain)
	k := table + "/" + chain
	if _, ok := f.chains[k]; !ok {
		return errFakeNotExist
	}
	f.chains[k] = append(f.chains[k], slices.Clone(spec))
	f.bump()
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
	f.bump()
	return nil
}

// Restore applies `iptables-restore --noflush` input as iptables-nft does:
// a chain declaration creates or flushes the chain, "-A" appends, "-D"
// deletes the first rule equal to its spec (an error if there is none).
// Each table section is committed on its own at its COMMIT (moving gen,
// if set, by one when it changed anything): an error, or failRestore
// naming the section's table, abandons that section and the ones after it,
// while those before stay committed.
func (f *fakeIPT) Restore(data []byte) error {
	if f.noRestore {
		return ErrUnsupported
	}
	f.calls = append(f.calls, "restore")
	if f.onRestore != nil {
		f.onRestore()
	}
	f.restores = append(f.restores, string(data))
	table := ""
	var work map[string][][]string // the section's chains, committed at COMMIT
	for i, line := range strings.Split(string(data), "\n") {
		bad := func(err error) error {
			return fmt.Errorf("fake iptables-restore: line %d failed: %w", i+1, err)
		}
		switch {
		case line == "":
		case strings.HasPrefix(line, "*"):
			table, work = line[1:], make(map[string][][]string)
		case work == nil:
			return bad(errors.New("outside a table section"))
		case line == "COMMIT":
			if table == f.failRestore {
				return bad(errors.New("injected failure"))
			}
			for k, rules := range work {
				f.chains[k] = rules
			}
			if len(work) > 0 {
				f.bump()
			}
			table, work = "", nil
		case strings.HasPrefix(line, ":"):
			work[table+"/"+strings.Fields(line[1:])[0]] = [][]string{}
		case strings.HasPrefix(line, "-A "), strings.HasPrefix(line, "-D "):
			args := splitRule(line)
			k := table + "/" + args[1]
			rules, ok := work[k]
			if !ok {
				if rules, ok = f.chains[k]; !ok {
					return bad(errFakeNotExist)
				}
				rules = slices.Clone(rules)
			}
			if args[0] == "-A" {
				rules = append(rules, args[2:])
			} else {
				i := slices.IndexFunc(rules, func(r []string) bool { return slices.Equal(r, args[2:]) })
				if i < 0 {
					return bad(errFakeNotExist)
				}
				rules = slices.Delete(rules, i, i+1)
			}
			work[k] = rules
		default:
			return bad(fmt.Errorf("bad line %q", line))
		}
	}
	if work != nil {
		return errors.New("fake iptables-restore: no COMMIT")
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
