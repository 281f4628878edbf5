package ipk

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"io/fs"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var epoch = time.Unix(1700000000, 0)

func sample() Package {
	return Package{
		Control: Control{
			Package:      "demo",
			Version:      "1.2.3-1",
			Depends:      []string{"libc", "kmod-nft-nat"},
			Section:      "net",
			Architecture: "mips_24kc",
			Description:  "A demo\nwith a second line\n\n  and a third",
		},
		Files: []File{
			{Path: "/usr/sbin/demo", Mode: 0o755, Data: []byte("\x7fELF")},
			{Path: "/etc/config/demo", Mode: 0o644, Data: []byte("config demo\n")},
			// "config-x" sorts before "config/" as a path but after
			// "config" as a name: tar --sort=name walks depth first.
			{Path: "/etc/config-x/y", Mode: 0o644, Data: []byte("y")},
			{Path: "/etc/demo", Mode: fs.ModeDir | 0o700},
			{Path: "/usr/bin/demo-link", Mode: fs.ModeSymlink | 0o777, Link: "../sbin/demo"},
		},
		Conffiles: []string{"/etc/config/demo", "/etc/config/missing", "/etc/demo", "/etc/config/demo"},
		Scripts:   map[string]string{"prerm": "#!/bin/sh\n", "postinst": "#!/bin/sh\nexit 0\n"},
		Epoch:     epoch,
	}
}

// member is one tar entry read back.
type member struct {
	hdr  *tar.Header
	data []byte
}

// untar reads a gzip'd tar, checking what every archive of a package must
// have: gzip -n headers, GNU format, 0:0 without names, the epoch as mtime.
func untar(t *testing.T, gz []byte) ([]member, int) {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	if zr.Name != "" || !zr.ModTime.IsZero() || zr.OS != 3 {
		t.Errorf("gzip header: name %q mtime %v os %d, want gzip -n on Unix", zr.Name, zr.ModTime, zr.OS)
	}
	raw, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if len(raw)%Record != 0 {
		t.Errorf("tar is %d bytes, not a multiple of %d", len(raw), Record)
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
		if h.Format != tar.FormatGNU || h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(epoch) {
			t.Errorf("%s: format %v owner %d:%d (%q:%q) mtime %v", h.Name, h.Format, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
		b, _ := io.ReadAll(tr)
		out = append(out, member{h, b})
	}
	return out, len(raw)
}

func names(ms []member) []string {
	var s []string
	for _, m := range ms {
		s = append(s, m.name())
	}
	return s
}

func (m member) name() string { return m.hdr.Name }

func TestBuildLayout(t *testing.T) {
	b, err := Build(sample())
	if err != nil {
		t.Fatal(err)
	}
	outer, _ := untar(t, b)
	if got, want := names(outer), []string{"./debian-binary", "./data.tar.gz", "./control.tar.gz"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("members %q, want %q", got, want)
	}
	if string(outer[0].data) != "2.0\n" {
		t.Errorf("debian-binary %q", outer[0].data)
	}
	for _, m := range outer {
		if m.hdr.Mode != 0o644 || m.hdr.Typeflag != tar.TypeReg {
			t.Errorf("%s: mode %o type %c", m.name(), m.hdr.Mode, m.hdr.Typeflag)
		}
	}

	data, dataLen := untar(t, outer[1].data)
	want := []string{"./", "./etc/", "./etc/config/", "./etc/config/demo", "./etc/config-x/", "./etc/config-x/y",
		"./etc/demo/", "./usr/", "./usr/bin/", "./usr/bin/demo-link", "./usr/sbin/", "./usr/sbin/demo"}
	if got := names(data); !reflect.DeepEqual(got, want) {
		t.Errorf("data.tar:\n got %q\nwant %q", got, want)
	}
	modes := map[string]int64{"./etc/": 0o755, "./etc/demo/": 0o700, "./usr/sbin/demo": 0o755, "./etc/config/demo": 0o644}
	for _, m := range data {
		if mode, ok := modes[m.name()]; ok && m.hdr.Mode != mode {
			t.Errorf("%s: mode %o, want %o", m.name(), m.hdr.Mode, mode)
		}
		if m.name() == "./usr/bin/demo-link" && (m.hdr.Typeflag != tar.TypeSymlink || m.hdr.Linkname != "../sbin/demo") {
			t.Errorf("link: type %c -> %q", m.hdr.Typeflag, m.hdr.Linkname)
		}
	}

	ctl, _ := untar(t, outer[2].data)
	if got, want := names(ctl), []string{"./", "./conffiles", "./control", "./postinst", "./prerm"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("control.tar: %q, want %q", got, want)
	}
	if got := string(ctl[1].data); got != "/etc/config/demo\n" {
		t.Errorf("conffiles %q: want only the regular file, once", got)
	}
	for _, m := range ctl[3:] {
		if m.hdr.Mode != 0o755 {
			t.Errorf("%s: mode %o", m.name(), m.hdr.Mode)
		}
	}
	fields, err := ParseControl(string(ctl[2].data))
	if err != nil {
		t.Fatal(err)
	}
	if fields["Installed-Size"] != strconv.Itoa(dataLen) {
		t.Errorf("Installed-Size %s, data.tar is %d bytes", fields["Installed-Size"], dataLen)
	}
	if fields["Depends"] != "libc, kmod-nft-nat" || fields["Architecture"] != "mips_24kc" ||
		fields["Description"] != "A demo\nwith a second line\nand a third" {
		t.Errorf("control fields %q", fields)
	}
}

func TestBuildReproducible(t *testing.T) {
	a, err := Build(sample())
	if err != nil {
		t.Fatal(err)
	}
	for range 5 { // map order of Scripts must not matter
		b, err := Build(sample())
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(a, b) {
			t.Fatal("two builds of the same package differ")
		}
	}
	p := sample()
	p.Epoch = epoch.Add(time.Second)
	if b, _ := Build(p); bytes.Equal(a, b) {
		t.Error("the epoch does not reach the archive")
	}
}

func TestBuildErrors(t *testing.T) {
	tests := []struct {
		name string
		edit func(*Package)
	}{
		{"package name", func(p *Package) { p.Control.Package = "Demo" }},
		{"version", func(p *Package) { p.Control.Version = "v1.2" }},
		{"arch", func(p *Package) { p.Control.Architecture = "" }},
		{"depends", func(p *Package) { p.Control.Depends = []string{"libc,x"} }},
		{"description", func(p *Package) { p.Control.Description = " " }},
		{"newline in field", func(p *Package) { p.Control.Maintainer = "a\nb" }},
		{"relative path", func(p *Package) { p.Files[0].Path = "usr/sbin/demo" }},
		{"unclean path", func(p *Package) { p.Files[0].Path = "/usr/../demo" }},
		{"twice", func(p *Package) { p.Files = append(p.Files, p.Files[0]) }},
		{"below a file", func(p *Package) { p.Files = append(p.Files, File{Path: "/usr/sbin/demo/x"}) }},
		{"file over a directory", func(p *Package) { p.Files = append(p.Files, File{Path: "/etc/config"}) }},
		{"script name", func(p *Package) { p.Scripts["../x"] = "" }},
		{"device", func(p *Package) { p.Files[0].Mode |= fs.ModeDevice }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := sample()
			tt.edit(&p)
			if _, err := Build(p); err == nil {
				t.Error("no error")
			}
		})
	}
	p := sample()
	p.Control.Version = "x"
	if _, err := Build(p); !errors.Is(err, ErrInvalid) {
		t.Errorf("err = %v, want ErrInvalid", err)
	}
}

func TestImpliedDirectoryListedLater(t *testing.T) {
	p := sample()
	p.Files = append(p.Files, File{Path: "/usr/sbin", Mode: fs.ModeDir | 0o750})
	b, err := Build(p)
	if err != nil {
		t.Fatal(err)
	}
	outer, _ := untar(t, b)
	data, _ := untar(t, outer[1].data)
	for _, m := range data {
		if m.name() == "./usr/sbin/" && m.hdr.Mode != 0o750 {
			t.Errorf("mode %o", m.hdr.Mode)
		}
	}
}

func TestFileName(t *testing.T) {
	c := Control{Package: "dpf", Version: "2:1.0-1", Architecture: "x86_64"}
	if got := FileName(c); got != "dpf_1.0-1_x86_64.ipk" {
		t.Error(got)
	}
}

func TestParseControlErrors(t *testing.T) {
	for _, s := range []string{"no colon", "A: 1\nA: 2", " continuation first", "Bad Name: x"} {
		if _, err := ParseControl(s); err == nil {
			t.Errorf("%q: no error", s)
		}
	}
	c := sample().Control
	fields, err := ParseControl(c.String())
	if err != nil || fields["Package"] != "demo" || fields["Version"] != "1.2.3-1" || fields["Section"] != "net" {
		t.Errorf("%q %v", fields, err)
	}
	if strings.Contains(c.String(), "License") {
		t.Error("empty License written")
	}
	// License and LicenseFiles come after SourceName and before Section,
	// where OpenWrt's package-pack.mk writes them.
	c.SourceName, c.License, c.LicenseFiles = "demo", "MIT", "LICENSE"
	var names []string
	for _, line := range strings.Split(c.String(), "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.HasPrefix(line, " ") {
			names = append(names, name)
		}
	}
	want := []string{"Package", "Version", "Depends", "SourceName", "License", "LicenseFiles", "Section", "Architecture", "Installed-Size", "Description"}
	if !slices.Equal(names, want) {
		t.Errorf("fields %q, want %q", names, want)
	}
	if fields, err := ParseControl(c.String()); err != nil || fields["License"] != "MIT" || fields["LicenseFiles"] != "LICENSE" {
		t.Errorf("%q %v", fields, err)
	}
	c.LicenseFiles = "LICENSE\nX: y"
	if err := c.Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("LicenseFiles with a newline: %v", err)
	}
}
