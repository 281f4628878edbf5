package firewall

import (
	"cmp"
	"errors"
	"fmt"
	"log/slog"
	"slices"
)

// ErrInvalid is returned (wrapped) by Add and Sync for a pinhole that cannot
// be installed: an unknown protocol, a zero port, a non-IPv4 address or
// filter prefix.
var ErrInvalid = errors.New("invalid pinhole")

// validate checks p and returns a copy with its filters normalized (see
// normalizeFilters).
func validate(p Pinhole) (Pinhole, error) {
	if p.Proto != TCP && p.Proto != UDP {
		return p, fmt.Errorf("%w: protocol %v", ErrInvalid, p.Proto)
	}
	if p.ExternalPort == 0 || p.InternalPort == 0 {
		return p, fmt.Errorf("%w: zero port in %v", ErrInvalid, p.Key())
	}
	if !p.InternalAddr.Is4() {
		return p, fmt.Errorf("%w: internal address %v is not IPv4", ErrInvalid, p.InternalAddr)
	}
	fs, err := normalizeFilters(p.Filters)
	if err != nil {
		return p, fmt.Errorf("%w: %v: %v", ErrInvalid, p.Key(), err)
	}
	p.Filters = fs
	return p, nil
}

// normalizeFilters returns fs masked, sorted and without duplicates or
// filters admitted by another filter of the list. The result admits exactly
// the peers fs admits. Both backends install the normalized form, and
// Installed returns it: nftables interval sets reject overlapping elements,
// and a canonical form makes "is this already installed" a comparison.
func normalizeFilters(fs []Filter) ([]Filter, error) {
	if len(fs) == 0 {
		return nil, nil
	}
	out := make([]Filter, 0, len(fs))
	for _, f := range fs {
		if !f.Prefix.IsValid() || !f.Prefix.Addr().Is4() {
			return nil, fmt.Errorf("filter prefix %v is not IPv4", f.Prefix)
		}
		out = append(out, Filter{Prefix: f.Prefix.Masked(), Port: f.Port})
	}
	slices.SortFunc(out, compareFilters)
	out = slices.Compact(out)
	kept := out[:0]
	for i, f := range out {
		covered := false
		for j, g := range out {
			if i != j && covers(g, f) { // distinct, so g admits more than f
				covered = true
				break
			}
		}
		if !covered {
			kept = append(kept, f)
		}
	}
	return kept, nil
}

// covers reports whether every peer admitted by f is admitted by g.
func covers(g, f Filter) bool {
	return g.Prefix.Bits() <= f.Prefix.Bits() && g.Prefix.Contains(f.Prefix.Addr()) &&
		(g.Port == 0 || g.Port == f.Port)
}

func compareFilters(a, b Filter) int {
	if c := a.Prefix.Addr().Compare(b.Prefix.Addr()); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Prefix.Bits(), b.Prefix.Bits()); c != 0 {
		return c
	}
	return cmp.Compare(a.Port, b.Port)
}

func compareKeys(a, b Key) int {
	if c := cmp.Compare(a.Proto, b.Proto); c != 0 {
		return c
	}
	return cmp.Compare(a.ExternalPort, b.ExternalPort)
}

// sortPinholes orders ps by key, the order Installed returns.
func sortPinholes(ps []Pinhole) {
	slices.SortFunc(ps, func(a, b Pinhole) int { return compareKeys(a.Key(), b.Key()) })
}

// equalPinholes reports whether a and b (both validated) are the same.
func equalPinholes(a, b Pinhole) bool {
	return a.Key() == b.Key() && a.InternalAddr == b.InternalAddr &&
		a.InternalPort == b.InternalPort && slices.Equal(a.Filters, b.Filters)
}

// validateAll validates ps and returns them keyed; a later pinhole with the
// key of an earlier one replaces it.
func validateAll(ps []Pinhole) (map[Key]Pinhole, error) {
	m := make(map[Key]Pinhole, len(ps))
	for _, p := range ps {
		v, err := validate(p)
		if err != nil {
			return nil, err
		}
		m[v.Key()] = v
	}
	return m, nil
}

func sortedPinholes(m map[Key]Pinhole) []Pinhole {
	ps := make([]Pinhole, 0, len(m))
	for _, p := range m {
		ps = append(ps, p)
	}
	sortPinholes(ps)
	return ps
}

// maxIfNameLen is the longest interface name Linux accepts (IFNAMSIZ - 1).
const maxIfNameLen = 15

func checkConfig(cfg Config) (Config, error) {
	if cfg.WANInterface == "" {
		return cfg, errors.New("firewall: Config.WANInterface is required")
	}
	if len(cfg.WANInterface) > maxIfNameLen {
		return cfg, fmt.Errorf("firewall: interface name %q too long", cfg.WANInterface)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg, nil
}
