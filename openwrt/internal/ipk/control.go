package ipk

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Control is the control file of a package. Fields are written in the order
// OpenWrt's include/package-pack.mk writes them; empty optional fields are
// left out.
type Control struct {
	Package    string   // required: [a-z0-9][a-z0-9.+-]*
	Version    string   // required: see ValidVersion
	Depends    []string // package names, optionally with a version constraint
	Source     string   // the package's directory in its feed
	SourceName string
	License    string // SPDX expression (PKG_LICENSE); empty leaves the field out
	// LicenseFiles names the licence files in the sources
	// (PKG_LICENSE_FILES, space-separated); empty leaves the field out.
	LicenseFiles string
	Section      string
	// SourceDateEpoch is the Unix time of the sources; zero leaves it out.
	SourceDateEpoch int64
	URL             string
	Maintainer      string
	Architecture    string // required: an OpenWrt package architecture or "all"
	// InstalledSize is set by Build: the length of the uncompressed data.tar.
	InstalledSize int64
	// Description is a one-line summary, optionally followed by more lines.
	Description string
}

var (
	namePattern = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*$`)
	archPattern = regexp.MustCompile(`^[a-z0-9][a-z0-9_.+-]*$`)
	// Debian policy 5.6.12, which opkg follows: [epoch:]upstream[-revision],
	// upstream starting with a digit.
	upstreamPattern = regexp.MustCompile(`^[0-9][A-Za-z0-9.+~-]*$`)
	revisionPattern = regexp.MustCompile(`^[A-Za-z0-9.+~]+$`)
	dependPattern   = regexp.MustCompile(`^[a-z0-9][a-z0-9.+-]*( \((<<|<=|=|>=|>>) [A-Za-z0-9.+~:-]+\))?$`)
)

// ValidVersion reports whether v is an opkg version: an optional numeric
// epoch and ':', an upstream version starting with a digit, and an optional
// '-' and revision (the last '-' starts the revision).
func ValidVersion(v string) bool {
	if i := strings.IndexByte(v, ':'); i >= 0 {
		if _, err := strconv.ParseUint(v[:i], 10, 32); err != nil {
			return false
		}
		v = v[i+1:]
	}
	up := v
	if i := strings.LastIndexByte(v, '-'); i >= 0 {
		up = v[:i]
		if !revisionPattern.MatchString(v[i+1:]) {
			return false
		}
	}
	return upstreamPattern.MatchString(up)
}

// Validate checks the fields opkg and the feed index rely on; errors wrap
// ErrInvalid.
func (c Control) Validate() error {
	bad := func(field, v string) error { return fmt.Errorf("%w: %s %q", ErrInvalid, field, v) }
	if !namePattern.MatchString(c.Package) {
		return bad("Package", c.Package)
	}
	if !ValidVersion(c.Version) {
		return bad("Version", c.Version)
	}
	if !archPattern.MatchString(c.Architecture) {
		return bad("Architecture", c.Architecture)
	}
	for _, d := range c.Depends {
		if !dependPattern.MatchString(d) {
			return bad("Depends", d)
		}
	}
	if strings.TrimSpace(c.Description) == "" {
		return bad("Description", c.Description)
	}
	for field, v := range map[string]string{"Source": c.Source, "SourceName": c.SourceName,
		"License": c.License, "LicenseFiles": c.LicenseFiles, "Section": c.Section, "URL": c.URL, "Maintainer": c.Maintainer} {
		if strings.ContainsAny(v, "\n\r") {
			return bad(field, v)
		}
	}
	return nil
}

// String returns the control file.
func (c Control) String() string {
	var b strings.Builder
	field := func(name, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%s: %s\n", name, v)
		}
	}
	field("Package", c.Package)
	field("Version", c.Version)
	field("Depends", strings.Join(c.Depends, ", "))
	field("Source", c.Source)
	field("SourceName", c.SourceName)
	field("License", c.License)
	field("LicenseFiles", c.LicenseFiles)
	field("Section", c.Section)
	if c.SourceDateEpoch != 0 {
		field("SourceDateEpoch", strconv.FormatInt(c.SourceDateEpoch, 10))
	}
	field("URL", c.URL)
	field("Maintainer", c.Maintainer)
	field("Architecture", c.Architecture)
	field("Installed-Size", strconv.FormatInt(c.InstalledSize, 10))
	// Continuation lines start with a space; blank lines are dropped, as
	// a line holding only a space would end the paragraph for some parsers.
	b.WriteString("Description:")
	for _, line := range strings.Split(strings.TrimSpace(c.Description), "\n") {
		if line = strings.TrimSpace(line); line != "" {
			b.WriteString(" " + line + "\n")
		}
	}
	return b.String()
}

// ParseControl reads a control file into its fields; continuation lines are
// joined to their field with "\n". It is the reader's side of String, for
// tests and tools.
func ParseControl(s string) (map[string]string, error) {
	fields := map[string]string{}
	last := ""
	for i, line := range strings.Split(strings.TrimRight(s, "\n"), "\n") {
		if strings.HasPrefix(line, " ") && last != "" {
			fields[last] += "\n" + strings.TrimSpace(line)
			continue
		}
		name, value, ok := strings.Cut(line, ":")
		if !ok || name == "" || strings.ContainsAny(name, " \t") {
			return nil, fmt.Errorf("control line %d: %q is not a field", i+1, line)
		}
		if _, dup := fields[name]; dup {
			return nil, fmt.Errorf("control line %d: field %s repeated", i+1, name)
		}
		fields[name] = strings.TrimSpace(value)
		last = name
	}
	return fields, nil
}
