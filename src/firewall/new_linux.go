//go:build linux

package firewall

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"

	"github.com/google/nftables"
)

// New returns the backend of the given kind: KindNFTables, KindIPTables, or
// KindAuto (or "") to pick one with Detect from facts gathered on this
// system (in cfg.NetNS if set). It returns an error wrapping ErrUnsupported
// when the backend cannot work here. New does not change the kernel's
// state; call Init (or Sync) next.
func New(kind string, cfg Config) (Backend, error) {
	if _, err := checkConfig(cfg); err != nil {
		return nil, err
	}
	if kind == "" || kind == KindAuto {
		env, err := gatherDetectEnv(cfg.NetNS)
		if err != nil {
			return nil, err
		}
		if kind, err = Detect(env); err != nil {
			if !IPTablesBuilt {
				err = fmt.Errorf("%w (this dpfd was built without the iptables backend, build tag noiptables)", err)
			}
			return nil, err
		}
		if cfg.Logger != nil {
			cfg.Logger.Debug("firewall: backend detected", "kind", kind, "env", fmt.Sprintf("%+v", env))
		}
	}
	// Each case returns nil explicitly on error: never a typed nil
	// pointer inside the interface.
	switch kind {
	case KindNFTables:
		b, err := newNFTables(cfg)
		if err != nil {
			return nil, err
		}
		return b, nil
	case KindIPTables:
		return newIPTablesBackend(cfg) // iptables_built_linux.go or noiptables_linux.go
	}
	return nil, fmt.Errorf("firewall: unknown backend %q (want %q, %q or %q)", kind, KindAuto, KindNFTables, KindIPTables)
}

// gatherDetectEnv collects the facts for Detect, in network namespace netns
// ("" for the current one).
func gatherDetectEnv(netns string) (DetectEnv, error) {
	var env DetectEnv
	var opts []nftables.ConnOption
	if netns != "" {
		ns, err := openNetNS(netns)
		if err != nil {
			return env, err
		}
		defer ns.Close()
		opts = append(opts, nftables.WithNetNSFd(int(ns.Fd())))
	}
	if c, err := nftables.New(opts...); err == nil {
		_, err = c.ListTablesOfFamily(nftables.TableFamilyIPv4)
		env.NFTablesUsable = err == nil
	}
	if !IPTablesBuilt {
		return env, nil // no iptables backend to choose: auto means nftables
	}
	path, err := exec.LookPath("iptables")
	if err != nil {
		return env, nil
	}
	env.IPTablesPresent = true
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		return env, nil // present but broken: leave the rest false
	}
	// "iptables v1.8.9 (legacy)" or "(nf_tables)"; before 1.8 there was
	// only legacy and no variant in the output.
	env.IPTablesLegacy = !bytes.Contains(out, []byte("nf_tables"))
	err = inNetNS(netns, func() error {
		// Per network namespace, hence thread-self.
		b, err := os.ReadFile("/proc/thread-self/net/ip_tables_names")
		env.LegacyRulesPresent = err == nil && strings.TrimSpace(string(b)) != ""
		return nil
	})
	return env, err
}
