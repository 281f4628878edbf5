package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/dpf-router/dpf/openwrt/internal/ipk"
)

// repoRoot is where files/ and luci/ are: the tests run in openwrt/ipkbuild.
const repoRoot = "../.."

// buildTimeout bounds cross-compiling both commands for every target: with
// an empty build cache that compiles the standard library five times.
const buildTimeout = 15 * time.Minute

// goCommand is the go command running the tests.
func goCommand(t *testing.T) string {
	t.Helper()
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	p := filepath.Join(runtime.GOROOT(), "bin", "go")
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("no go command: %v", err)
	}
	return p
}

// TestPackages builds the real binaries for every target, packs them twice
// and checks the packages with archive/tar and with the system's tar, as
// opkg would unpack them.
func TestPackages(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	bins := t.TempDir()
	version := ipk.VersionFromDescribe("v1.2.3-4-gabcdef0", 0)
	ldflags := "-s -w -X main.Version=v1.2.3-4-gabcdef0 -X github.com/dpf-router/dpf/src/daemon.Version=v1.2.3-4-gabcdef0 " + PackageVersionFlag(version)
	sizes, err := BuildBinaries(ctx, goCommand(t), repoRoot, bins, ldflags, strings.Join(BuildTags, ","))
	if err != nil {
		t.Fatal(err)
	}
	for _, tg := range Targets {
		s := sizes[tg.Arch]
		t.Logf("%s: dpfd %d bytes, dpf %d bytes", tg.Arch, s["dpfd"], s["dpf"])
		if s["dpfd"] > MaxDPFDSize {
			t.Errorf("%s: dpfd is %d bytes, more than %d (tags %q)", tg.Arch, s["dpfd"], MaxDPFDSize, BuildTags)
		}
	}
	o := Options{Root: repoRoot, BinDir: bins, Version: version,
		Epoch: 1700000000, Maintainer: "Test <test@example.org>", Go: goCommand(t)}
	first, err := BuildAll(o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	second, err := BuildAll(o, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if len(first) != len(Targets)+1 {
		t.Fatalf("%d packages: %q", len(first), first)
	}
	for i := range first {
		a, b := sha256File(t, first[i]), sha256File(t, second[i])
		if a != b {
			t.Errorf("%s: two builds differ (%x, %x)", filepath.Base(first[i]), a, b)
		}
	}
	for i, tg := range Targets {
		t.Run(tg.Arch, func(t *testing.T) {
			want := "dpf_1.2.3+git4.abcdef0-1_" + tg.Arch + ".ipk"
			if filepath.Base(first[i]) != want {
				t.Fatalf("file %s, want %s", filepath.Base(first[i]), want)
			}
			p := readIPK(t, first[i], o.Epoch)
			checkControl(t, p, "dpf", o.Version, tg.Arch, "libc", "kmod-nft-nat")
			checkDPFData(t, p, tg)
			checkLicenses(t, p.files())
			checkScripts(t, p)
			checkWithSystemTar(t, first[i], p)
			if run := versionRunner(tg); run != nil {
				dir := t.TempDir()
				for _, b := range Binaries {
					f := filepath.Join(dir, b.Name)
					if err := os.WriteFile(f, p.data[b.Path].data, 0o755); err != nil {
						t.Fatal(err)
					}
					checkVersionOutput(t, run(t, f), b.Name, version, "v1.2.3-4-gabcdef0")
				}
			}
		})
	}
	// The version test covers the native build and one big-endian MIPS
	// build under qemu-user: both must have run.
	for _, arch := range []string{"x86_64", "mips_24kc"} {
		if !slices.ContainsFunc(Targets, func(tg Target) bool { return tg.Arch == arch && versionRunner(tg) != nil }) {
			t.Errorf("no --version run for %s", arch)
		}
	}
	t.Run("luci-app-dpf", func(t *testing.T) {
		f := first[len(first)-1]
		if filepath.Base(f) != "luci-app-dpf_1.2.3+git4.abcdef0-1_all.ipk" {
			t.Fatalf("file %s", f)
		}
		p := readIPK(t, f, o.Epoch)
		checkControl(t, p, "luci-app-dpf", o.Version, "all", "luci-base", "dpf")
		if _, ok := p.control["./conffiles"]; ok {
			t.Error("luci-app-dpf has conffiles")
		}
		for dir, prefix := range map[string]string{"luci/htdocs": "/www", "luci/root": "/"} {
			for rel, mode := range repoFiles(t, dir) {
				if prefix == "/www" {
					mode = 0o644
				}
				checkFile(t, p, path.Join(prefix, rel), filepath.Join(repoRoot, dir, rel), mode)
			}
		}
		for name := range p.data {
			if strings.HasSuffix(name, ".po") || strings.HasSuffix(name, ".pot") || strings.HasSuffix(name, ".lmo") {
				t.Errorf("translation %s packaged", name)
			}
		}
		post := string(p.control["./postinst-pkg"].data)
		if !strings.Contains(post, "/tmp/luci-indexcache") || !strings.Contains(post, "rpcd reload") {
			t.Errorf("postinst-pkg does not clear LuCI's cache and reload rpcd:\n%s", post)
		}
		checkScripts(t, p)
		checkWithSystemTar(t, f, p)
	})
}

func sha256File(t *testing.T, name string) [32]byte {
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return sha256.Sum256(b)
}

type member struct {
	hdr  *tar.Header
	data []byte
}

type unpacked struct {
	outer   []string
	control map[string]member // "./control", "./postinst", ...
	data    map[string]member // "/usr/sbin/dpfd", "/etc/", ...
	fields  map[string]string
	dataLen int
}

// files returns the regular files of the data archive by absolute path.
func (p unpacked) files() map[string][]byte {
	out := map[string][]byte{}
	for name, m := range p.data {
		if m.hdr.Typeflag == tar.TypeReg {
			out[name] = m.data
		}
	}
	return out
}

// readIPK unpacks a package with archive/tar, checking on the way that
// every entry of every archive is owned by 0:0 and dated epoch.
func readIPK(t *testing.T, name string, epoch int64) unpacked {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	var p unpacked
	outer, _ := untar(t, b, epoch)
	for _, m := range outer {
		p.outer = append(p.outer, m.hdr.Name)
	}
	if want := []string{"./debian-binary", "./data.tar.gz", "./control.tar.gz"}; !slices.Equal(p.outer, want) {
		t.Fatalf("members %q, want %q", p.outer, want)
	}
	if string(outer[0].data) != "2.0\n" {
		t.Errorf("debian-binary is %q", outer[0].data)
	}
	data, n := untar(t, outer[1].data, epoch)
	p.dataLen = n
	p.data = map[string]member{}
	for _, m := range data {
		p.data[strings.TrimPrefix(m.hdr.Name, ".")] = m
	}
	ctl, _ := untar(t, outer[2].data, epoch)
	p.control = map[string]member{}
	for _, m := range ctl {
		p.control[m.hdr.Name] = m
	}
	if p.fields, err = ipk.ParseControl(string(p.control["./control"].data)); err != nil {
		t.Fatal(err)
	}
	return p
}

func untar(t *testing.T, gz []byte, epoch int64) ([]member, int) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	var out []member
	tr := tar.NewReader(bytes.NewReader(raw))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || h.ModTime.Unix() != epoch {
			t.Errorf("%s: owner %d:%d (%q:%q), mtime %v", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		d, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, member{h, d})
	}
	return out, len(raw)
}

func checkControl(t *testing.T, p unpacked, pkg, version, arch string, depends ...string) {
	t.Helper()
	f := p.fields
	for _, name := range []string{"Package", "Version", "Depends", "Source", "SourceName", "License", "LicenseFiles",
		"Section", "SourceDateEpoch", "URL", "Maintainer", "Architecture", "Installed-Size", "Description"} {
		if f[name] == "" {
			t.Errorf("control: no %s field", name)
		}
	}
	if f["License"] != "MIT" || f["LicenseFiles"] != "LICENSE" {
		t.Errorf("control: License %q LicenseFiles %q, want MIT and LICENSE", f["License"], f["LicenseFiles"])
	}
	if f["Package"] != pkg || f["Version"] != version || !ipk.ValidVersion(f["Version"]) || f["Architecture"] != arch {
		t.Errorf("control: Package %q Version %q Architecture %q", f["Package"], f["Version"], f["Architecture"])
	}
	if f["Installed-Size"] != strconv.Itoa(p.dataLen) {
		t.Errorf("Installed-Size %s, data.tar has %d bytes", f["Installed-Size"], p.dataLen)
	}
	deps := strings.Split(f["Depends"], ", ")
	for _, d := range depends {
		if !slices.Contains(deps, d) {
			t.Errorf("Depends %q lacks %s", f["Depends"], d)
		}
	}
}

// repoFiles returns the regular files below dir of the repository,
// relative to it, with the mode the package must give them.
func repoFiles(t *testing.T, dir string) map[string]fs.FileMode {
	t.Helper()
	out := map[string]fs.FileMode{}
	root := filepath.Join(repoRoot, dir)
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if os.IsNotExist(err) && p == root {
			return filepath.SkipDir
		}
		if err != nil || !d.Type().IsRegular() || strings.HasPrefix(d.Name(), ".") || strings.HasSuffix(d.Name(), "~") {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		mode := fs.FileMode(0o644)
		for _, x := range []string{"etc/init.d/", "usr/libexec/", "usr/sbin/", "usr/bin/", "etc/hotplug.d/"} {
			if strings.HasPrefix(rel, x) {
				mode = 0o755
			}
		}
		if rel == "etc/config/dpf" { // may hold client keys
			mode = 0o600
		}
		out[rel] = mode
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func checkFile(t *testing.T, p unpacked, name, src string, mode fs.FileMode) {
	t.Helper()
	m, ok := p.data[name]
	if !ok {
		t.Errorf("%s is not in the package", name)
		return
	}
	if m.hdr.Typeflag != tar.TypeReg || fs.FileMode(m.hdr.Mode) != mode {
		t.Errorf("%s: type %c mode %o, want a file with mode %o", name, m.hdr.Typeflag, m.hdr.Mode, mode)
	}
	if src != "" {
		want, err := os.ReadFile(src)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(m.data, want) {
			t.Errorf("%s differs from %s", name, src)
		}
	}
}

func checkDPFData(t *testing.T, p unpacked, tg Target) {
	t.Helper()
	files := repoFiles(t, "files")
	if _, ok := files["etc/config/dpf"]; !ok {
		t.Fatal("files/etc/config/dpf is missing")
	}
	for rel, mode := range files {
		checkFile(t, p, "/"+rel, filepath.Join(repoRoot, "files", rel), mode)
	}
	if files["etc/config/dpf"] != 0o600 {
		t.Error("the configuration (it may hold client keys) would not be 0600")
	}
	var conf []string
	for rel := range files {
		if strings.HasPrefix(rel, "etc/config/") {
			conf = append(conf, "/"+rel)
		}
	}
	slices.Sort(conf)
	if got := string(p.control["./conffiles"].data); got != strings.Join(conf, "\n")+"\n" {
		t.Errorf("conffiles %q, want %q", got, conf)
	}
	for _, b := range Binaries {
		checkFile(t, p, b.Path, "", 0o755)
		checkELF(t, b.Path, p.data[b.Path].data, tg)
	}
	for name, m := range p.data {
		if m.hdr.Typeflag == tar.TypeDir && m.hdr.Mode != 0o755 {
			t.Errorf("directory %s: mode %o", name, m.hdr.Mode)
		}
	}
}

// checkELF checks that a binary runs on tg without a dynamic loader.
func checkELF(t *testing.T, name string, b []byte, tg Target) {
	t.Helper()
	f, err := elf.NewFile(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: %v", name, err)
		return
	}
	defer f.Close()
	if f.Machine != tg.Machine || f.ByteOrder != tg.Order || f.Class != tg.Class || f.Type != elf.ET_EXEC || f.OSABI != elf.ELFOSABI_NONE {
		t.Errorf("%s: %v %v %v %v %v, want %v %v %v ET_EXEC", name, f.Machine, f.ByteOrder, f.Class, f.Type, f.OSABI, tg.Machine, tg.Order, tg.Class)
	}
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP || prog.Type == elf.PT_DYNAMIC {
			t.Errorf("%s: has %v: not static", name, prog.Type)
		}
	}
}

// checkScripts checks that the maintainer scripts are executable POSIX sh
// scripts and that the OpenWrt wrappers call default_postinst/prerm.
func checkScripts(t *testing.T, p unpacked) {
	t.Helper()
	dir := t.TempDir()
	for _, name := range []string{"./postinst", "./prerm", "./postinst-pkg", "./postrm"} {
		m, ok := p.control[name]
		if !ok {
			t.Errorf("no %s", name)
			continue
		}
		if m.hdr.Mode != 0o755 || !bytes.HasPrefix(m.data, []byte("#!/bin/sh\n")) {
			t.Errorf("%s: mode %o, starts %q", name, m.hdr.Mode, m.data[:min(len(m.data), 12)])
		}
		f := filepath.Join(dir, path.Base(name))
		if err := os.WriteFile(f, m.data, 0o755); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command("sh", "-n", f).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", name, err, out)
		}
	}
	// The wrappers on a root with a stub /lib/functions.sh: they pass the
	// script's path on, and IPKG_NO_SCRIPT=1 skips postinst.
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "lib"), 0o755)
	stub := "default_postinst() { echo \"postinst $*\"; }\ndefault_prerm() { echo \"prerm $*\"; }\n"
	if err := os.WriteFile(filepath.Join(root, "lib", "functions.sh"), []byte(stub), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ script, env, want string }{
		{"postinst", "", "postinst " + filepath.Join(dir, "postinst") + " configure\n"},
		{"postinst", "IPKG_NO_SCRIPT=1", ""},
		{"prerm", "", "prerm " + filepath.Join(dir, "prerm") + " configure\n"},
	} {
		cmd := exec.Command("sh", filepath.Join(dir, tt.script), "configure")
		cmd.Env = append(os.Environ(), "IPKG_INSTROOT="+root, tt.env)
		out, err := cmd.Output()
		if err != nil || string(out) != tt.want {
			t.Errorf("%s %s: %q, %v; want %q", tt.env, tt.script, out, err, tt.want)
		}
	}
	// In an image build the package scripts leave the running system alone.
	for _, s := range []string{"postinst-pkg", "postrm"} {
		cmd := exec.Command("sh", "-x", filepath.Join(dir, s))
		cmd.Env = append(os.Environ(), "IPKG_INSTROOT="+root)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.Contains(string(out), "rpcd") || strings.Contains(string(out), "rm ") {
			t.Errorf("%s with IPKG_INSTROOT: %v\n%s", s, err, out)
		}
	}
}

// checkWithSystemTar unpacks the package the way opkg does (tar -xzf of the
// package, then of control.tar.gz and data.tar.gz) and compares.
func checkWithSystemTar(t *testing.T, ipkFile string, p unpacked) {
	t.Helper()
	dir := t.TempDir()
	tarx := func(args ...string) string {
		out, err := exec.Command("tar", args...).CombinedOutput()
		if err != nil {
			t.Fatalf("tar %q: %v\n%s", args, err, out)
		}
		return string(out)
	}
	tarx("-xzf", ipkFile, "-C", dir)
	ents, _ := os.ReadDir(dir)
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if want := []string{"control.tar.gz", "data.tar.gz", "debian-binary"}; !slices.Equal(got, want) {
		t.Fatalf("tar -xzf: %q", got)
	}
	ctl := filepath.Join(dir, "control")
	os.Mkdir(ctl, 0o755)
	tarx("-xzf", filepath.Join(dir, "control.tar.gz"), "-C", ctl)
	control, err := os.ReadFile(filepath.Join(ctl, "control"))
	if err != nil || !bytes.Equal(control, p.control["./control"].data) {
		t.Errorf("control from tar: %v\n%s", err, control)
	}
	if st, err := os.Stat(filepath.Join(ctl, "postinst")); err != nil || st.Mode().Perm() != 0o755 {
		t.Errorf("postinst from tar: %v %v", st.Mode(), err)
	}
	data := filepath.Join(dir, "data")
	os.Mkdir(data, 0o755)
	tarx("-xzf", filepath.Join(dir, "data.tar.gz"), "-C", data)
	for name, m := range p.data {
		st, err := os.Lstat(filepath.Join(data, name))
		if err != nil {
			t.Errorf("tar did not unpack %s: %v", name, err)
			continue
		}
		if m.hdr.Typeflag == tar.TypeReg && (st.Mode().Perm() != fs.FileMode(m.hdr.Mode) || st.Size() != m.hdr.Size) {
			t.Errorf("%s from tar: %v %d bytes", name, st.Mode(), st.Size())
		}
	}
	// Every entry listed with numeric owners is 0/0.
	for _, line := range strings.Split(strings.TrimSpace(tarx("--numeric-owner", "-tvzf", filepath.Join(dir, "data.tar.gz"))), "\n") {
		if f := strings.Fields(line); len(f) < 2 || f[1] != "0/0" {
			t.Errorf("tar -tv: %q", line)
		}
	}
}
