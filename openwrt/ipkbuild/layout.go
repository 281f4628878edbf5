package main

import (
	"bytes"
	"cmp"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/dpf-router/dpf/openwrt/internal/ipk"
)

// Options are the inputs of the packages; only main reads flags.
type Options struct {
	Root       string // the repository: files/ and luci/ are read from here
	BinDir     string // BinDir/<arch>/dpfd and BinDir/<arch>/dpf
	Version    string // opkg version, see ipk.VersionFromDescribe
	Epoch      int64  // SOURCE_DATE_EPOCH: every mtime, and the SourceDateEpoch field
	Maintainer string // empty leaves the field out
	Go         string // the go command that built the binaries ("go" when empty): the licences are in its module cache
}

// URL is the project's home.
const URL = "https://github.com/dpf-router/dpf"

// Depends of the dpf package. The binaries are static, but OpenWrt gives
// every package "libc" (and opkg resolves it on any image). The nftables
// backend adds a DNAT rule and matches conntrack state, which needs the
// nft_nat and nf_conntrack modules: kmod-nft-nat (firewall4 on 22.03+
// pulls it in too, but dpfd must not rely on the firewall package). The
// iptables backend is optional and needs no dependency here.
var dpfDepends = []string{"libc", "kmod-nft-nat"}

// luciDepends follows luci.mk: luci-base plus the service it configures.
var luciDepends = []string{"libc", "luci-base", "dpf"}

// execDirs hold programs: files below them are installed 0755, everything
// else 0644. Hotplug scripts are sourced by hotplug-call, so their mode
// does not matter to it; 0755 lets one run them by hand.
var execDirs = []string{"etc/init.d", "usr/libexec", "usr/sbin", "usr/bin", "sbin", "bin", "etc/hotplug.d"}

// secretFiles may hold secrets (dpfd's client keys, config key sections):
// 0600, as OpenWrt's $(INSTALL_CONF) installs configuration.
var secretFiles = []string{"etc/config/dpf"}

// fileMode returns the mode of a file at rel (slash-separated, relative to
// "/") under the mode rules above.
func fileMode(rel string) fs.FileMode {
	for _, f := range secretFiles {
		if rel == f {
			return 0o600
		}
	}
	for _, d := range execDirs {
		if strings.HasPrefix(rel, d+"/") {
			return 0o755
		}
	}
	return 0o644
}

// readTree returns the files below dir, installed below prefix. Directories
// are 0755, files get fileMode, symbolic links are kept as links. Names
// OpenWrt's packaging removes (hidden files, editor backups) are skipped.
// A missing dir gives no files.
func readTree(dir, prefix string, mode func(rel string) fs.FileMode) ([]ipk.File, error) {
	var files []ipk.File
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == dir && os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if p == dir {
			return nil
		}
		name := d.Name()
		if strings.HasPrefix(name, ".") || strings.HasSuffix(name, "~") || name == "CVS" {
			if d.IsDir() {
				return filepath.SkipDir
			}
			return nil
		}
		rel, err := filepath.Rel(dir, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		f := ipk.File{Path: path.Join(prefix, rel)}
		switch {
		case d.IsDir():
			f.Mode = fs.ModeDir | 0o755
		case d.Type()&fs.ModeSymlink != 0:
			if f.Link, err = os.Readlink(p); err != nil {
				return err
			}
			f.Mode = fs.ModeSymlink | 0o777
		case d.Type().IsRegular():
			if f.Data, err = os.ReadFile(p); err != nil {
				return err
			}
			f.Mode = mode(strings.TrimPrefix(f.Path, "/"))
		default:
			return fmt.Errorf("%s: not a file, directory or symbolic link", p)
		}
		files = append(files, f)
		return nil
	})
	return files, err
}

// The maintainer scripts. postinst and prerm are the wrappers OpenWrt's
// package-pack.mk generates for every package: default_postinst (from
// /lib/functions.sh) runs uci-defaults, then the package's postinst-pkg,
// then enables and starts each /etc/init.d script of the package (on a
// device; in an image build, IPKG_INSTROOT set, it only enables them) and
// leaves a service the user disabled disabled on upgrade (PKG_UPGRADE=1).
// default_prerm stops and disables them. The -pkg scripts and postrm are
// ours; openwrt/dpf/Makefile and openwrt/luci-app-dpf/Makefile say the same.
const (
	postinst = `#!/bin/sh
[ "${IPKG_NO_SCRIPT}" = "1" ] && exit 0
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_postinst "$0" "$@"
`
	prerm = `#!/bin/sh
[ -s "${IPKG_INSTROOT}/lib/functions.sh" ] || exit 0
. "${IPKG_INSTROOT}/lib/functions.sh"
default_prerm "$0" "$@"
`
	// rpcd lists /usr/libexec/rpcd and the ACLs when it starts: a reload
	// makes the "dpf" ubus object appear (or go) without a reboot.
	dpfPostinstPkg = `#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] && exit 0
[ -x /etc/init.d/rpcd ] && /etc/init.d/rpcd reload
exit 0
`
	dpfPostrm = `#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] && exit 0
[ -x /etc/init.d/rpcd ] && /etc/init.d/rpcd reload
exit 0
`
	// LuCI caches its menu index and modules in /tmp.
	luciPostinstPkg = `#!/bin/sh
[ -n "${IPKG_INSTROOT}" ] && exit 0
rm -f /tmp/luci-indexcache*
rm -rf /tmp/luci-modulecache/
[ -x /etc/init.d/rpcd ] && /etc/init.d/rpcd reload
exit 0
`
	luciPostrm = luciPostinstPkg
)

// DPFPackage is the dpf package for target t: the two binaries and the
// files/ tree of the repository.
func DPFPackage(o Options, t Target) (ipk.Package, error) {
	files, err := readTree(filepath.Join(o.Root, "files"), "/", fileMode)
	if err != nil {
		return ipk.Package{}, err
	}
	bins := map[string][]byte{}
	for _, b := range Binaries {
		data, err := os.ReadFile(filepath.Join(o.BinDir, t.Arch, b.Name))
		if err != nil {
			return ipk.Package{}, fmt.Errorf("%w (run make openwrt)", err)
		}
		// --version must name the package (PackageVersionFlag): a binary
		// without the version string was built for another one.
		if !bytes.Contains(data, []byte(o.Version)) {
			return ipk.Package{}, fmt.Errorf("%s/%s/%s does not carry the version %s (built for another commit? run make openwrt)",
				o.BinDir, t.Arch, b.Name, o.Version)
		}
		files = append(files, ipk.File{Path: b.Path, Mode: 0o755, Data: data})
		bins[b.Name] = data
	}
	texts, err := Licenses(cmp.Or(o.Go, "go"), o.Root, bins)
	if err != nil {
		return ipk.Package{}, fmt.Errorf("licences: %w", err)
	}
	for name, data := range texts {
		files = append(files, ipk.File{Path: path.Join(LicenseDir, name), Mode: 0o644, Data: data})
	}
	var conf []string
	for _, f := range files {
		if strings.HasPrefix(f.Path, "/etc/config/") && f.Mode.IsRegular() {
			conf = append(conf, f.Path)
		}
	}
	return ipk.Package{
		Control: ipk.Control{
			Package:         "dpf",
			Version:         o.Version,
			Depends:         dpfDepends,
			Source:          "openwrt/dpf",
			SourceName:      "dpf",
			License:         License,
			LicenseFiles:    LicenseFiles,
			Section:         "net",
			SourceDateEpoch: o.Epoch,
			URL:             URL,
			Maintainer:      o.Maintainer,
			Architecture:    t.Arch,
			Description: `Dynamic port forwarding: PCP and NAT-PMP server for the router
dpfd answers PCP (RFC 6887) and NAT-PMP (RFC 6886) requests on the LAN
and opens a pinhole in nftables or iptables for as long as each lease
lives; leases survive restarts. dpf is the client command (expose, run,
status, nat-type).`,
		},
		Files:     files,
		Conffiles: conf,
		Scripts: map[string]string{
			"postinst": postinst, "postinst-pkg": dpfPostinstPkg,
			"prerm": prerm, "postrm": dpfPostrm,
		},
		Epoch: time.Unix(o.Epoch, 0),
	}, nil
}

// LuCIPackage is luci-app-dpf: luci/htdocs below /www and luci/root below
// /, as luci.mk installs them. Translations (luci/po) are not packaged:
// LuCI needs them compiled to .lmo, one luci-i18n-dpf-LANG package each,
// which the SDK build (luci.mk) does.
func LuCIPackage(o Options) (ipk.Package, error) {
	htdocs, err := readTree(filepath.Join(o.Root, "luci", "htdocs"), "/www", func(string) fs.FileMode { return 0o644 })
	if err != nil {
		return ipk.Package{}, err
	}
	root, err := readTree(filepath.Join(o.Root, "luci", "root"), "/", fileMode)
	if err != nil {
		return ipk.Package{}, err
	}
	return ipk.Package{
		Control: ipk.Control{
			Package:         "luci-app-dpf",
			Version:         o.Version,
			Depends:         luciDepends,
			Source:          "openwrt/luci-app-dpf",
			SourceName:      "luci-app-dpf",
			License:         License,
			LicenseFiles:    LicenseFiles,
			Section:         "luci",
			SourceDateEpoch: o.Epoch,
			URL:             URL,
			Maintainer:      o.Maintainer,
			Architecture:    "all",
			Description: `LuCI support for DPF (dynamic port forwarding)
Configure dpfd, and list and delete its port mappings, in LuCI.`,
		},
		Files: append(htdocs, root...),
		Scripts: map[string]string{
			"postinst": postinst, "postinst-pkg": luciPostinstPkg,
			"prerm": prerm, "postrm": luciPostrm,
		},
		Epoch: time.Unix(o.Epoch, 0),
	}, nil
}

// BuildAll writes the dpf package of every target and luci-app-dpf into
// out, after removing the .ipk files of earlier builds, and returns the
// paths written.
func BuildAll(o Options, out string) ([]string, error) {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return nil, err
	}
	for _, pattern := range []string{"dpf_*.ipk", "luci-app-dpf_*.ipk"} {
		old, _ := filepath.Glob(filepath.Join(out, pattern))
		for _, f := range old {
			if err := os.Remove(f); err != nil {
				return nil, err
			}
		}
	}
	var pkgs []ipk.Package
	for _, t := range Targets {
		p, err := DPFPackage(o, t)
		if err != nil {
			return nil, fmt.Errorf("dpf %s: %w", t.Arch, err)
		}
		pkgs = append(pkgs, p)
	}
	l, err := LuCIPackage(o)
	if err != nil {
		return nil, fmt.Errorf("luci-app-dpf: %w", err)
	}
	pkgs = append(pkgs, l)
	var written []string
	for _, p := range pkgs {
		b, err := ipk.Build(p)
		if err != nil {
			return nil, fmt.Errorf("%s %s: %w", p.Control.Package, p.Control.Architecture, err)
		}
		name := filepath.Join(out, ipk.FileName(p.Control))
		if err := os.WriteFile(name, b, 0o644); err != nil {
			return nil, err
		}
		written = append(written, name)
	}
	return written, nil
}
