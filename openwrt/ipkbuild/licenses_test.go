package main

import (
	"bytes"
	"debug/buildinfo"
	"encoding/json"
	"errors"
	"io"
	"maps"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dpf-router/dpf/openwrt/internal/ipk"
)

// modSource is a module (or the Go distribution, Path "go") whose licence
// a package must carry, and the directory its licence files are read from.
type modSource struct {
	Path, Version, Dir string
}

var (
	modDirsMu sync.Mutex
	modDirs   = map[string]string{} // path@version -> directory, from go mod download
)

// moduleDirs finds the directories of modules the way the go command
// reports them (go mod download -json, offline), not through moduleDir,
// so that the check does not share the code it checks.
func moduleDirs(t *testing.T, keys []string) map[string]string {
	t.Helper()
	modDirsMu.Lock()
	defer modDirsMu.Unlock()
	var missing []string
	for _, k := range keys {
		if _, ok := modDirs[k]; !ok {
			missing = append(missing, k)
		}
	}
	if len(missing) > 0 {
		cmd := exec.Command(goCommand(t), append([]string{"mod", "download", "-json"}, missing...)...)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=-mod=mod")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("go mod download %q: %v\n%s", missing, err, out)
		}
		dec := json.NewDecoder(bytes.NewReader(out))
		for {
			var m struct{ Path, Version, Dir, Error string }
			if err := dec.Decode(&m); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatal(err)
			}
			if m.Error != "" || m.Dir == "" {
				t.Fatalf("go mod download %s@%s: %q", m.Path, m.Version, m.Error)
			}
			modDirs[m.Path+"@"+m.Version] = m.Dir
		}
	}
	out := map[string]string{}
	for _, k := range keys {
		out[k] = modDirs[k]
	}
	return out
}

// linkedSources returns what the binaries among files (Binaries' paths)
// link, per their build information: every module, and Go itself.
func linkedSources(t *testing.T, files map[string][]byte) []modSource {
	t.Helper()
	cmd := exec.Command(goCommand(t), "env", "GOROOT")
	cmd.Dir = repoRoot
	goroot, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	srcs := map[string]modSource{}
	for _, b := range Binaries {
		data, ok := files[b.Path]
		if !ok {
			t.Fatalf("%s is not in the package", b.Path)
		}
		bi, err := buildinfo.Read(bytes.NewReader(data))
		if err != nil {
			t.Fatalf("%s: %v", b.Path, err)
		}
		gover, _, _ := strings.Cut(bi.GoVersion, " ")
		srcs["go@"+gover] = modSource{"go", gover, strings.TrimSpace(string(goroot))}
		if len(bi.Deps) == 0 {
			t.Fatalf("%s links no module", b.Path)
		}
		for _, d := range bi.Deps {
			from := d
			if d.Replace != nil {
				from = d.Replace
			}
			k := from.Path + "@" + from.Version
			keys = append(keys, k)
			srcs[d.Path+"@"+d.Version] = modSource{d.Path, d.Version, k} // Dir resolved below
		}
	}
	dirs := moduleDirs(t, keys)
	var out []modSource
	for _, s := range srcs {
		if s.Path != "go" {
			s.Dir = dirs[s.Dir]
		}
		out = append(out, s)
	}
	return out
}

// licenseProblems compares the files below LicenseDir with what they must
// be for mods: DPF's LICENSE, then per module exactly one file holding every
// licence and notice file of the module's directory, and nothing else.
func licenseProblems(files map[string][]byte, mods []modSource, ownLicense []byte) []string {
	var problems []string
	want := map[string]bool{"LICENSE": true}
	if !bytes.Equal(files[path.Join(LicenseDir, "LICENSE")], ownLicense) {
		problems = append(problems, "LICENSE is not the repository's LICENSE")
	}
	for _, m := range mods {
		name := LicenseFileName(m.Path, m.Version)
		want[name] = true
		text, ok := files[path.Join(LicenseDir, name)]
		if !ok {
			problems = append(problems, m.Path+" "+m.Version+": no "+path.Join(LicenseDir, name))
			continue
		}
		if !bytes.Contains(text, []byte(m.Path)) || !bytes.Contains(text, []byte(m.Version)) {
			problems = append(problems, name+" does not name its module and version")
		}
		var found int
		ents, _ := os.ReadDir(m.Dir)
		for _, e := range ents {
			upper := strings.ToUpper(e.Name())
			var paths []string
			switch {
			case e.IsDir() && upper == "LICENSES":
				sub, _ := os.ReadDir(filepath.Join(m.Dir, e.Name()))
				for _, s := range sub {
					paths = append(paths, filepath.Join(e.Name(), s.Name()))
				}
			case e.IsDir():
			case strings.HasPrefix(upper, "LICENSE"), strings.HasPrefix(upper, "LICENCE"), strings.HasPrefix(upper, "COPYING"),
				strings.HasPrefix(upper, "NOTICE"), strings.HasPrefix(upper, "PATENTS"):
				paths = append(paths, e.Name())
			}
			for _, p := range paths {
				lic, err := os.ReadFile(filepath.Join(m.Dir, p))
				if err != nil {
					problems = append(problems, err.Error())
					continue
				}
				found++
				if !bytes.Contains(text, lic) {
					problems = append(problems, name+" lacks the text of "+p)
				}
			}
		}
		if found == 0 {
			problems = append(problems, m.Path+" "+m.Version+": no licence file in "+m.Dir)
		}
	}
	for f := range files {
		if dir, name := path.Split(f); path.Clean(dir) == LicenseDir && !want[name] {
			problems = append(problems, f+": no module linked gives it")
		}
	}
	slices.Sort(problems)
	return problems
}

// checkLicenses checks that the data files of a dpf package (path ->
// contents) carry the licence of everything linked into its binaries.
func checkLicenses(t *testing.T, files map[string][]byte) {
	t.Helper()
	own, err := os.ReadFile(filepath.Join(repoRoot, "LICENSE"))
	if err != nil {
		t.Fatal(err)
	}
	mods := linkedSources(t, files)
	for _, p := range licenseProblems(files, mods, own) {
		t.Error(p)
	}
	// The Apache-2.0 modules' NOTICE must be there: it is why the texts
	// are shipped at all.
	for name, data := range files {
		if strings.HasPrefix(name, LicenseDir+"/github.com_coreos_go-iptables@") && !bytes.Contains(data, []byte("==> NOTICE <==")) {
			t.Errorf("%s: no NOTICE", name)
		}
	}
}

// TestLicenseCheckFails shows that licenseProblems notices a module whose
// licence is missing from a package, a licence text cut short, a stray file
// and a replaced LICENSE.
func TestLicenseCheckFails(t *testing.T) {
	dir := t.TempDir()
	mod := filepath.Join(dir, "example.com", "m@v1.0.0")
	os.MkdirAll(mod, 0o755)
	os.WriteFile(filepath.Join(mod, "LICENSE"), []byte("the licence\n"), 0o644)
	os.WriteFile(filepath.Join(mod, "NOTICE"), []byte("the notice\n"), 0o644)
	mods := []modSource{{"example.com/m", "v1.0.0", mod}}
	texts, err := LicenseTexts([]linked{{Path: "example.com/m", Version: "v1.0.0", Dir: mod, Binaries: []string{"dpfd"}}}, []byte("own\n"))
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	for name, data := range texts {
		files[path.Join(LicenseDir, name)] = data
	}
	if p := licenseProblems(files, mods, []byte("own\n")); len(p) != 0 {
		t.Fatalf("complete package: %q", p)
	}
	name := path.Join(LicenseDir, LicenseFileName("example.com/m", "v1.0.0"))
	for what, change := range map[string]func(map[string][]byte){
		"missing module":  func(f map[string][]byte) { delete(f, name) },
		"no notice":       func(f map[string][]byte) { f[name] = bytes.ReplaceAll(f[name], []byte("the notice"), nil) },
		"stray file":      func(f map[string][]byte) { f[path.Join(LicenseDir, "x@v1")] = nil },
		"another LICENSE": func(f map[string][]byte) { f[path.Join(LicenseDir, "LICENSE")] = []byte("other\n") },
	} {
		f := maps.Clone(files)
		change(f)
		if p := licenseProblems(f, mods, []byte("own\n")); len(p) == 0 {
			t.Errorf("%s: not noticed", what)
		}
	}
}

// TestLicenseTexts checks what LicenseTexts writes for a module and that
// it refuses modules without a licence.
func TestLicenseTexts(t *testing.T) {
	dir := t.TempDir()
	mk := func(name string, files map[string]string) string {
		d := filepath.Join(dir, name)
		for f, body := range files {
			os.MkdirAll(filepath.Dir(filepath.Join(d, f)), 0o755)
			if err := os.WriteFile(filepath.Join(d, f), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		os.MkdirAll(d, 0o755)
		return d
	}
	good := mk("good", map[string]string{"LICENSE.md": "MIT terms", "NOTICE": "notice", "LICENSES/CC0-1.0.txt": "cc0\n",
		"README.md": "not a licence", "licenses.go": "package x"})
	texts, err := LicenseTexts([]linked{{Path: "example.com/Good", Version: "v1.2.3", Dir: good, Binaries: []string{"dpf", "dpfd"}}}, []byte("own"))
	if err != nil {
		t.Fatal(err)
	}
	got := string(texts["example.com_Good@v1.2.3"])
	want := "module example.com/Good v1.2.3, linked into dpf and dpfd\n\n==> LICENSE.md <==\n\nMIT terms\n\n==> LICENSES/CC0-1.0.txt <==\n\ncc0\n\n==> NOTICE <==\n\nnotice\n"
	if got != want || string(texts["LICENSE"]) != "own" || len(texts) != 2 {
		t.Errorf("got %q\nwant %q\n(%d files)", got, want, len(texts))
	}
	for name, d := range map[string]string{
		"notice only": mk("notice", map[string]string{"NOTICE": "n", "PATENTS": "p"}),
		"nothing":     mk("nothing", map[string]string{"README": "r"}),
		"no dir":      filepath.Join(dir, "absent"),
	} {
		if _, err := LicenseTexts([]linked{{Path: "example.com/x", Version: "v1.0.0", Dir: d}}, nil); err == nil || !strings.Contains(err.Error(), "example.com/x v1.0.0") {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestModuleDir(t *testing.T) {
	if got, want := moduleDir("/c", "github.com/BurntSushi/toml", "v1.0.0-RC1"), filepath.FromSlash("/c/github.com/!burnt!sushi/toml@v1.0.0-!r!c1"); got != want {
		t.Errorf("%s, want %s", got, want)
	}
}

// versionRunner returns how to run a binary of tg on this machine, or nil:
// natively for x86_64 (CI runs on x86_64) and under qemu-user for
// mips_24kc, the commonest router CPU (big-endian, soft float).
func versionRunner(tg Target) func(t *testing.T, bin string) string {
	var prefix []string
	switch tg.Arch {
	case "x86_64":
	case "mips_24kc":
		prefix = []string{"qemu-mips-static"}
	default:
		return nil
	}
	return func(t *testing.T, bin string) string {
		t.Helper()
		args := append(append([]string(nil), prefix...), bin, "--version")
		if _, err := exec.LookPath(args[0]); err != nil {
			t.Fatalf("%v (qemu-user-static is a Debian package make deps installs)", err)
		}
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s --version: %v\n%s", bin, err, out)
		}
		return string(out)
	}
}

// checkVersionOutput checks a --version output of the binary name in a
// package of version pkgVersion: one line naming the binary, the package
// version and git describe, and containing the version as
// openwrt/packages' CI looks for it (the package version without its
// release: "${VERSION%-*}").
func checkVersionOutput(t *testing.T, out, name, pkgVersion, describe string) {
	t.Helper()
	ci := pkgVersion[:strings.LastIndexByte(pkgVersion, '-')]
	want := name + " " + pkgVersion + " (" + describe + ")\n"
	if out != want || !strings.Contains(out, ci) || !ipk.ValidVersion(pkgVersion) {
		t.Errorf("%s --version: %q, want %q (containing %q)", name, out, want, ci)
	}
}
