package main

import (
	"bytes"
	"context"
	"debug/buildinfo"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// The OpenWrt SDK is not here, so TestFeedMakefile runs openwrt/dpf/Makefile
// with GNU make against small stand-ins for the SDK files it includes. They
// stand in for, and must be kept in line with:
//
//   - rules.mk and include/package.mk (openwrt/openwrt): the directories
//     and install commands, PKG_ASLR_PIE's default (hardening.mk), VERSION
//     as Package/Default sets it when BuildPackage runs (opkg's form,
//     PKG_VERSION-PKG_RELEASE), and the order prepare, compile, install;
//   - lang/golang/golang-package.mk (openwrt/packages, the same in 22.03,
//     23.05, 24.10 and master): the variables a package may set or
//     override (GO_PKG_TARGET_VARS with CGO_ENABLED=1 and the target's
//     gcc, GO_PKG_BUILD_VARS, GO_PKG_VARS putting them in that order on
//     the go command's line, GO_PKG_DEFAULT_LDFLAGS with -linkmode
//     external, GO_PKG_LDFLAGS_X, GO_PKG_TAGS, -trimpath, PIE under
//     CONFIG_PKG_ASLR_PIE_ALL), and its build step: go install run from
//     PKG_BUILD_DIR/.go_work/build, which finds the module's go.mod above it.
//
// The go install of the stand-in is real, so the test checks the binaries
// the Makefile's settings give: static, CGO_ENABLED=0, the build tags of
// BuildTags, -trimpath, the package version in --version (x86_64 natively,
// mips_24kc under qemu-mips-static), and the licence texts. The target's
// gcc does not exist: any use of cgo or of external linking fails the
// build. What it cannot show is that the real golang-package.mk still has
// this shape; compare after an openwrt/packages update.
var feedStubs = map[string]string{
	"rules.mk": `# Stand-in for OpenWrt's rules.mk (openwrt/ipkbuild/feed_test.go).
SHELL:=/bin/bash
INCLUDE_DIR:=$(TOPDIR)/include
BUILD_DIR:=$(TOPDIR)/build
INSTALL_DIR:=install -d -m0755
INSTALL_BIN:=install -m0755
INSTALL_DATA:=install -m0644
INSTALL_CONF:=install -m0600
`,
	"include/package.mk": `# Stand-in for OpenWrt's include/package.mk (openwrt/ipkbuild/feed_test.go).
PKG_BUILD_DIR ?= $(BUILD_DIR)/$(PKG_NAME)-$(PKG_VERSION)
PKG_ASLR_PIE ?= 1

define Package/Default
  VERSION:=$(PKG_VERSION)-$(PKG_RELEASE)
  MAINTAINER:=$(PKG_MAINTAINER)
endef

# As OpenWrt's, the rules are made by expanding the package's definitions
# into text that is then evaluated, so recipes are expanded twice ($$$$
# in Package/NAME/install reaches the shell as $).
define BuildPackage
  $(eval $(Package/Default))
  $(eval $(Package/$(1)))
  $(call Stub/Rules,$(1))
endef

define Stub/Rules
stub-prepare:
	rm -rf $(PKG_BUILD_DIR)
	mkdir -p $(PKG_BUILD_DIR)
	$(Build/Prepare)
stub-compile: stub-prepare
	$(Build/Compile)
stub-install: stub-compile
	mkdir -p $(PKG_BUILD_DIR)/ipkg-install
	$(call Package/$(1)/install,$(PKG_BUILD_DIR)/ipkg-install)
endef

.PHONY: stub-vars stub-prepare stub-compile stub-install
stub-vars:
	$(info VERSION=$(VERSION))
	$(info DPF_DESCRIBE=$(DPF_DESCRIBE))
	$(info PKG_LICENSE=$(PKG_LICENSE))
	$(info PKG_LICENSE_FILES=$(PKG_LICENSE_FILES))
	$(info GO_PKG_TAGS=$(GO_PKG_TAGS))
	@true
`,
	"feeds/packages/lang/golang/golang-package.mk": `# Stand-in for golang-package.mk (openwrt/ipkbuild/feed_test.go).
unexport GOOS GOARCH GOFLAGS GOPATH GOCACHE GOMODCACHE GOENV GOROOT GOTOOLCHAIN GOBIN GOWORK

GO_OS:=linux
GO_ARCH:=$(STUB_GOARCH)
GO_AMD64:=$(STUB_GOAMD64)
GO_MIPS:=$(STUB_GOMIPS)
GO_HOST_TARGET_DIFFERENT:=$(if $(filter $(GO_OS)/$(GO_ARCH),$(STUB_HOST)),,1)
GO_ARCH_DEPENDS:=@(mips||x86_64)
GO_BUILD_CACHE_DIR:=$(STUB_GOCACHE)
GO_MOD_CACHE_DIR:=$(STUB_GOMODCACHE)
GO_BIN_PATH:=PATH=$(STUB_GOROOT)/bin:$(PATH)

GO_PKG_BUILD_PKG?=$(GO_PKG)/...
GO_PKG_BUILD_DIR=$(PKG_BUILD_DIR)/.go_work/build
GO_PKG_BUILD_BIN_DIR=$(GO_PKG_BUILD_DIR)/bin$(if $(GO_HOST_TARGET_DIFFERENT),/$(GO_OS)_$(GO_ARCH))

ifdef CONFIG_PKG_ASLR_PIE_ALL
  ifeq ($(strip $(PKG_ASLR_PIE)),1)
    GO_PKG_ENABLE_PIE:=1
  endif
endif

GO_PKG_TARGET_VARS= \
	GOOS="$(GO_OS)" GOARCH="$(GO_ARCH)" GOAMD64="$(GO_AMD64)" GOMIPS="$(GO_MIPS)" \
	CGO_ENABLED=1 CC="$(TOPDIR)/no-target-gcc" CXX="$(TOPDIR)/no-target-g++" \
	CGO_CFLAGS="-Os" CGO_LDFLAGS="-Wl,-z,now"
GO_PKG_BUILD_VARS= \
	GOPATH="$(GO_PKG_BUILD_DIR)" GOCACHE="$(GO_BUILD_CACHE_DIR)" GOMODCACHE="$(GO_MOD_CACHE_DIR)" \
	GOENV=off GOTOOLCHAIN=local
GO_PKG_VARS= $(GO_BIN_PATH) $(GO_PKG_TARGET_VARS) $(GO_PKG_BUILD_VARS)

GO_PKG_DEFAULT_LDFLAGS= -linkmode external -extldflags '-Wl,-z,now'
GO_PKG_CUSTOM_LDFLAGS= $(GO_PKG_LDFLAGS) $(patsubst %,-X %,$(GO_PKG_LDFLAGS_X))
GO_PKG_INSTALL_ARGS= -v -buildvcs=false -trimpath \
	-ldflags "all=$(GO_PKG_DEFAULT_LDFLAGS)" \
	$(if $(GO_PKG_ENABLE_PIE),-buildmode pie) \
	$(if $(strip $(GO_PKG_CUSTOM_LDFLAGS)),-ldflags "$(GO_PKG_CUSTOM_LDFLAGS) $(GO_PKG_DEFAULT_LDFLAGS)") \
	$(if $(strip $(GO_PKG_TAGS)),-tags "$(GO_PKG_TAGS)")

define Build/Compile
	mkdir -p $(GO_PKG_BUILD_DIR)
	cd $(GO_PKG_BUILD_DIR) && $(GO_PKG_VARS) go install -modcacherw $(GO_PKG_INSTALL_ARGS) $(GO_PKG_BUILD_PKG)
endef

define GoBinPackage
endef
`,
}

// feedBuild is one run of the feed Makefile: its variables and what
// Package/dpf/install installed (absolute path -> contents, and modes).
type feedBuild struct {
	vars     map[string]string
	buildDir string
	files    map[string][]byte
	modes    map[string]fs.FileMode
}

// runFeed runs stub-vars and stub-install of openwrt/dpf/Makefile with the
// stand-ins for target tg; extra are more make variables.
func runFeed(t *testing.T, ctx context.Context, tg Target, extra ...string) feedBuild {
	t.Helper()
	top := t.TempDir()
	for name, body := range feedStubs {
		f := filepath.Join(top, name)
		if err := os.MkdirAll(filepath.Dir(f), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(f, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	goCmd := goCommand(t)
	env := map[string]string{}
	for _, v := range []string{"GOCACHE", "GOMODCACHE", "GOROOT"} {
		out, err := exec.Command(goCmd, "env", v).Output()
		if err != nil {
			t.Fatal(err)
		}
		env[v] = strings.TrimSpace(string(out))
	}
	args := []string{"-C", filepath.Join(absRepo(t), "openwrt", "dpf"), "--no-print-directory",
		"TOPDIR=" + top, "STUB_HOST=linux/" + runtime.GOARCH, "STUB_GOARCH=" + tg.GOARCH,
		"STUB_GOCACHE=" + env["GOCACHE"], "STUB_GOMODCACHE=" + env["GOMODCACHE"], "STUB_GOROOT=" + env["GOROOT"]}
	for _, e := range tg.Env {
		k, v, _ := strings.Cut(e, "=")
		switch k {
		case "GOAMD64":
			args = append(args, "STUB_GOAMD64="+v)
		case "GOMIPS":
			args = append(args, "STUB_GOMIPS="+v)
		default:
			t.Fatalf("%s: %s has no stand-in", tg.Arch, e)
		}
	}
	args = append(args, extra...)
	mk := func(goal string) string {
		cmd := exec.CommandContext(ctx, "make", append(args, goal)...)
		cmd.Env = append(os.Environ(), "GOPROXY=off", "GOFLAGS=")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("make %s: %v\n%s", goal, err, out)
		}
		return string(out)
	}
	b := feedBuild{vars: map[string]string{}, files: map[string][]byte{}, modes: map[string]fs.FileMode{}}
	for _, line := range strings.Split(mk("stub-vars"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			b.vars[k] = v
		}
	}
	mk("stub-install")
	dirs, _ := filepath.Glob(filepath.Join(top, "build", "dpf-*"))
	if len(dirs) != 1 {
		t.Fatalf("build directories %q", dirs)
	}
	b.buildDir = dirs[0]
	inst := filepath.Join(b.buildDir, "ipkg-install")
	err := filepath.WalkDir(inst, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(inst, p)
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b.files["/"+filepath.ToSlash(rel)] = data
		b.modes["/"+filepath.ToSlash(rel)] = info.Mode().Perm()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func absRepo(t *testing.T) string {
	t.Helper()
	p, err := filepath.Abs(repoRoot)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func git(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command("git", append([]string{"-C", absRepo(t)}, args...)...).Output()
	if err != nil {
		t.Fatalf("git %q: %v (the feed Makefile builds from this git checkout)", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestFeedMakefile builds the dpf package with openwrt/dpf/Makefile and
// the stand-ins of the SDK (see feedStubs) for x86_64 and mips_24kc and
// checks that it makes the binaries make ipk makes, from the commit, with
// the package version in --version and the licence texts.
func TestFeedMakefile(t *testing.T) {
	if _, err := exec.LookPath("make"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), buildTimeout)
	defer cancel()
	head := git(t, "rev-parse", "HEAD")
	describe := git(t, "describe", "--tags", "--always", head)
	tracked := strings.Split(git(t, "ls-tree", "-r", "--name-only", head), "\n")
	for _, arch := range []string{"x86_64", "mips_24kc"} {
		tg := Targets[slices.IndexFunc(Targets, func(tg Target) bool { return tg.Arch == arch })]
		t.Run(arch, func(t *testing.T) {
			// CONFIG_PKG_ASLR_PIE_ALL asks for PIE, which the package
			// turns off: a Go PIE needs a dynamic loader.
			b := runFeed(t, ctx, tg, "CONFIG_PKG_ASLR_PIE_ALL=y")
			v := b.vars
			if v["PKG_LICENSE"] != License || v["PKG_LICENSE_FILES"] != LicenseFiles {
				t.Errorf("PKG_LICENSE %q PKG_LICENSE_FILES %q, want %q %q (control fields of make ipk)",
					v["PKG_LICENSE"], v["PKG_LICENSE_FILES"], License, LicenseFiles)
			}
			if v["GO_PKG_TAGS"] != strings.Join(BuildTags, ",") {
				t.Errorf("GO_PKG_TAGS %q, BuildTags %q", v["GO_PKG_TAGS"], BuildTags)
			}
			if v["DPF_DESCRIBE"] != describe || !regexp.MustCompile(`^[0-9][0-9.]*-[0-9]+$`).MatchString(v["VERSION"]) {
				t.Errorf("DPF_DESCRIBE %q (git describe %q), VERSION %q", v["DPF_DESCRIBE"], describe, v["VERSION"])
			}
			checkFeedSource(t, b.buildDir, tracked)
			for _, bin := range Binaries {
				data, ok := b.files[bin.Path]
				if !ok {
					t.Fatalf("%s not installed", bin.Path)
				}
				if b.modes[bin.Path] != 0o755 {
					t.Errorf("%s: mode %v", bin.Path, b.modes[bin.Path])
				}
				checkELF(t, bin.Path, data, tg)
				checkBuildSettings(t, bin.Path, data, tg)
				f := filepath.Join(t.TempDir(), bin.Name)
				if err := os.WriteFile(f, data, 0o755); err != nil {
					t.Fatal(err)
				}
				checkVersionOutput(t, versionRunner(tg)(t, f), bin.Name, v["VERSION"], describe)
			}
			checkLicenses(t, b.files)
			for _, rel := range tracked {
				if rel, ok := strings.CutPrefix(rel, "files/"); ok {
					if m, ok := b.modes["/"+rel]; !ok || m != fileMode(rel) {
						t.Errorf("/%s: mode %v (installed: %v), want %v", rel, m, ok, fileMode(rel))
					}
				}
			}
		})
	}
}

// checkFeedSource checks that Build/Prepare gave the build exactly the
// files of the commit: nothing untracked (bin/, node_modules), nothing
// missing.
func checkFeedSource(t *testing.T, dir string, tracked []string) {
	t.Helper()
	var got []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && (rel == ".go_work" || rel == "ipkg-install") {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			got = append(got, filepath.ToSlash(rel))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(got)
	want := slices.Clone(tracked)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		for _, f := range got {
			if !slices.Contains(want, f) {
				t.Errorf("build directory has %s, which the commit has not", f)
			}
		}
		for _, f := range want {
			if !slices.Contains(got, f) {
				t.Errorf("build directory lacks %s", f)
			}
		}
	}
}

// checkBuildSettings checks the go build settings recorded in a binary
// against make ipk's: no cgo, BuildTags, -trimpath, Go's internal linker
// (golang-package.mk's default is -linkmode external), the target's
// GOARCH variant.
func checkBuildSettings(t *testing.T, name string, data []byte, tg Target) {
	t.Helper()
	bi, err := buildinfo.Read(bytes.NewReader(data))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	s := map[string]string{}
	for _, kv := range bi.Settings {
		s[kv.Key] = kv.Value
	}
	want := map[string]string{"CGO_ENABLED": "0", "-tags": strings.Join(BuildTags, ","), "-trimpath": "true",
		"GOARCH": tg.GOARCH, "-buildmode": "exe"}
	for _, e := range tg.Env {
		k, v, _ := strings.Cut(e, "=")
		want[k] = v
	}
	for k, v := range want {
		if s[k] != v {
			t.Errorf("%s: build setting %s=%q, want %q", name, k, s[k], v)
		}
	}
	if strings.Contains(s["-ldflags"], "linkmode") {
		t.Errorf("%s: -ldflags %q", name, s["-ldflags"])
	}
}
