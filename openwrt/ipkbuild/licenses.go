package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
)

// LicenseDir is where the dpf package installs the licence texts: LICENSE
// (DPF's own) and one file per module linked into dpfd or dpf, and one for
// the Go distribution (runtime and standard library), named by
// LicenseFileName. The MIT, BSD and Apache-2.0 licences of those modules
// all ask for their text (and Apache-2.0 for the NOTICE file) to go with
// binary copies.
const LicenseDir = "/usr/share/licenses/dpf"

// License and LicenseFiles are the License and LicenseFiles control fields
// of both packages, as PKG_LICENSE and PKG_LICENSE_FILES in the feed
// Makefiles (the tests compare them).
const (
	License      = "MIT"
	LicenseFiles = "LICENSE"
)

// licenseName matches the files of a module's root directory that carry its
// licence terms: the licence itself (LICENSE, LICENCE, COPYING, UNLICENSE,
// with any suffix such as .md or -MIT) and the notices that must travel with
// it (NOTICE, which Apache-2.0 requires to be passed on, PATENTS of the Go
// project, COPYRIGHT). A REUSE-style LICENSES/ directory counts as well.
var (
	licenseName = regexp.MustCompile(`(?i)^(licen[cs]e|copying|unlicense)([._-].*)?$`)
	noticeName  = regexp.MustCompile(`(?i)^(notice|patents|copyright)([._-].*)?$`)
)

// linked is one module linked into the binaries, or the Go distribution.
type linked struct {
	Path, Version string
	Dir           string   // its files: the module cache, a replacement directory or GOROOT
	Binaries      []string // the binaries it is linked into, sorted
}

// LicenseFileName is the file below LicenseDir holding the licence of
// module path at version: the path with "/" replaced by "_", "@", the
// version ("github.com_google_nftables@v0.3.0"). The Go distribution is
// "go@go1.26.0".
func LicenseFileName(path, version string) string {
	return strings.ReplaceAll(path, "/", "_") + "@" + version
}

// goEnv returns the go command's GOMODCACHE and GOROOT, as it sees them in
// dir (the module root: a toolchain go.mod selects counts).
func goEnv(goCmd, dir string) (modcache, goroot string, err error) {
	cmd := exec.Command(goCmd, "env", "-json", "GOMODCACHE", "GOROOT")
	cmd.Dir = dir
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("go env: %v", err)
	}
	var env struct{ GOMODCACHE, GOROOT string }
	if err := json.Unmarshal(out, &env); err != nil {
		return "", "", fmt.Errorf("go env: %v", err)
	}
	if env.GOMODCACHE == "" || env.GOROOT == "" {
		return "", "", fmt.Errorf("go env: GOMODCACHE %q GOROOT %q", env.GOMODCACHE, env.GOROOT)
	}
	return env.GOMODCACHE, env.GOROOT, nil
}

// LinkedModules reads the build information of the binaries (name ->
// contents: what "go version -m" shows) and returns every module linked
// into them, the main module excepted, and the Go distribution they were
// built with, located in modcache (GOMODCACHE), root (the main module's
// directory, for replacements by a relative path) and goroot.
func LinkedModules(bins map[string][]byte, modcache, root, goroot string) ([]linked, error) {
	byKey := map[string]*linked{}
	add := func(bin, path, version, dir string) {
		k := path + "@" + version
		m := byKey[k]
		if m == nil {
			m = &linked{Path: path, Version: version, Dir: dir}
			byKey[k] = m
		}
		if !slices.Contains(m.Binaries, bin) {
			m.Binaries = append(m.Binaries, bin)
		}
	}
	names := make([]string, 0, len(bins))
	for name := range bins {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		bi, err := buildinfo.Read(bytes.NewReader(bins[name]))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		gover, _, _ := strings.Cut(bi.GoVersion, " ")
		add(name, "go", gover, goroot)
		for _, d := range bi.Deps {
			switch {
			case d.Replace == nil:
				add(name, d.Path, d.Version, moduleDir(modcache, d.Path, d.Version))
			case d.Replace.Version == "": // a directory
				dir := d.Replace.Path
				if !filepath.IsAbs(dir) {
					dir = filepath.Join(root, dir)
				}
				add(name, d.Path, d.Version, dir)
			default:
				add(name, d.Path, d.Version, moduleDir(modcache, d.Replace.Path, d.Replace.Version))
			}
		}
	}
	mods := make([]linked, 0, len(byKey))
	for _, m := range byKey {
		slices.Sort(m.Binaries)
		mods = append(mods, *m)
	}
	slices.SortFunc(mods, func(a, b linked) int { return strings.Compare(a.Path+"@"+a.Version, b.Path+"@"+b.Version) })
	return mods, nil
}

// moduleDir is where the go command extracts path@version in modcache:
// upper-case letters are written "!" and the lower-case letter (the
// module cache's case encoding).
func moduleDir(modcache, path, version string) string {
	return filepath.Join(modcache, filepath.FromSlash(escapeCase(path))+"@"+escapeCase(version))
}

func escapeCase(s string) string {
	var b strings.Builder
	for _, r := range s {
		if 'A' <= r && r <= 'Z' {
			b.WriteByte('!')
			r += 'a' - 'A'
		}
		b.WriteRune(r)
	}
	return b.String()
}

// LicenseTexts returns the files of LicenseDir (name -> contents) for
// mods: per module a header naming it, its version and the binaries it is
// in, then each licence and notice file of its directory. It fails when a
// module has no licence file, so that nothing is shipped without one.
func LicenseTexts(mods []linked, ownLicense []byte) (map[string][]byte, error) {
	out := map[string][]byte{"LICENSE": ownLicense}
	for _, m := range mods {
		files, err := licenseFiles(m.Dir)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", m.Path, m.Version, err)
		}
		var b bytes.Buffer
		what := "module " + m.Path + " " + m.Version
		if m.Path == "go" {
			what = "Go " + m.Version + " (runtime and standard library)"
		}
		fmt.Fprintf(&b, "%s, linked into %s\n", what, strings.Join(m.Binaries, " and "))
		for _, f := range files {
			data, err := os.ReadFile(filepath.Join(m.Dir, f))
			if err != nil {
				return nil, err
			}
			fmt.Fprintf(&b, "\n==> %s <==\n\n", filepath.ToSlash(f))
			b.Write(data)
			if len(data) > 0 && data[len(data)-1] != '\n' {
				b.WriteByte('\n')
			}
		}
		name := LicenseFileName(m.Path, m.Version)
		if _, dup := out[name]; dup {
			return nil, fmt.Errorf("two modules give the licence file name %s", name)
		}
		out[name] = b.Bytes()
	}
	return out, nil
}

// licenseFiles lists the licence and notice files of a module directory,
// relative to it, sorted: licenseName and noticeName files at the top, and
// the files of a LICENSES directory. At least one licence is required.
func licenseFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("no module directory (is it in the module cache? go mod download): %w", err)
	}
	var files []string
	licences := 0
	for _, e := range ents {
		name := e.Name()
		switch {
		case e.IsDir() && strings.EqualFold(name, "LICENSES"):
			sub, err := os.ReadDir(filepath.Join(dir, name))
			if err != nil {
				return nil, err
			}
			for _, s := range sub {
				if s.Type().IsRegular() {
					files = append(files, filepath.Join(name, s.Name()))
					licences++
				}
			}
		case !e.Type().IsRegular():
		case licenseName.MatchString(name):
			files = append(files, name)
			licences++
		case noticeName.MatchString(name):
			files = append(files, name)
		}
	}
	if licences == 0 {
		return nil, fmt.Errorf("no licence file (LICENSE, COPYING, ...) in %s", dir)
	}
	slices.Sort(files)
	return files, nil
}

// Licenses returns the files of LicenseDir for the binaries (name ->
// contents), built with the go command goCmd in the module root: DPF's
// LICENSE and the licence of every module and Go release linked into them.
func Licenses(goCmd, root string, bins map[string][]byte) (map[string][]byte, error) {
	modcache, goroot, err := goEnv(goCmd, root)
	if err != nil {
		return nil, err
	}
	mods, err := LinkedModules(bins, modcache, root, goroot)
	if err != nil {
		return nil, err
	}
	own, err := os.ReadFile(filepath.Join(root, "LICENSE"))
	if err != nil {
		return nil, err
	}
	return LicenseTexts(mods, own)
}
