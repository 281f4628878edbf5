// Package ipk writes opkg packages (.ipk) in the layout OpenWrt's
// scripts/ipkg-build gives them (OpenWrt 22.03 to 24.10), without the
// OpenWrt SDK. The archives list the same entries with the same headers;
// the compressed bytes differ from gzip's, as Go's deflate is another
// implementation.
//
// An .ipk is a gzip-compressed GNU tar holding, in this order,
// ./debian-binary ("2.0\n"), ./data.tar.gz and ./control.tar.gz. The two
// inner archives are GNU tars of a directory tree ("./", "./etc/", ...),
// entries sorted by name directory by directory (tar --sort=name), owned by
// 0:0 without user or group names (--numeric-owner under fakeroot), every
// mtime set to the source date epoch, and compressed without a file name or
// time stamp (gzip -n). Installed-Size is the length of the uncompressed
// data.tar, as ipkg-build computes it (zcat data.tar.gz | wc -c).
//
// Build is pure: the same Package gives the same bytes (with the same Go
// release, whose compress/flate writes the gzip streams).
package ipk

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io/fs"
	"path"
	"regexp"
	"slices"
	"strings"
	"time"
)

// File is one entry of a package's data archive.
type File struct {
	// Path is the absolute installed path, e.g. "/usr/sbin/dpfd". Parent
	// directories are added (mode 0755) when not listed.
	Path string
	// Mode holds the permission bits and, for a directory or a symbolic
	// link, fs.ModeDir or fs.ModeSymlink; zero type bits mean a regular file.
	Mode fs.FileMode
	// Data is the content of a regular file.
	Data []byte
	// Link is the target of a symbolic link.
	Link string
}

// Package is everything an .ipk is made of.
type Package struct {
	Control Control
	Files   []File
	// Conffiles are absolute paths of configuration files opkg must not
	// overwrite on upgrade. As in ipkg-build, paths that are not regular
	// files in Files are dropped and the rest are sorted.
	Conffiles []string
	// Scripts are the maintainer scripts by control file name ("postinst",
	// "prerm", "postrm", "postinst-pkg", ...). Each is stored with mode 0755.
	Scripts map[string]string
	// Epoch is the modification time of every entry (SOURCE_DATE_EPOCH).
	Epoch time.Time
}

// Record is GNU tar's default record size (blocking factor 20): archives
// are padded with zeros to a multiple of it, and Installed-Size counts the
// padding, as it does for packages built by ipkg-build.
const Record = 20 * 512

// FileName returns the name ipkg-build gives the package:
// NAME_VERSION_ARCH.ipk, without the version's epoch.
func FileName(c Control) string {
	v := c.Version
	if i := strings.IndexByte(v, ':'); i >= 0 {
		v = v[i+1:]
	}
	return c.Package + "_" + v + "_" + c.Architecture + ".ipk"
}

// Build returns the .ipk for p. It fails if the control fields are invalid
// (see Control.Validate), a path is not clean and absolute or is listed
// twice, or a file is neither regular, a directory nor a symbolic link.
func Build(p Package) ([]byte, error) {
	if err := p.Control.Validate(); err != nil {
		return nil, err
	}
	root, err := newTree(p.Files)
	if err != nil {
		return nil, err
	}
	var data bytes.Buffer
	if err := writeTar(&data, p.Epoch, root.entries()); err != nil {
		return nil, fmt.Errorf("data.tar: %w", err)
	}
	c := p.Control
	c.InstalledSize = int64(data.Len())
	control := []entry{
		{name: "./", mode: fs.ModeDir | 0o755},
		{name: "./control", mode: 0o644, data: []byte(c.String())},
	}
	if conf := root.conffiles(p.Conffiles); len(conf) > 0 {
		control = append(control, entry{name: "./conffiles", mode: 0o644, data: []byte(strings.Join(conf, "\n") + "\n")})
	}
	for name, body := range p.Scripts {
		if !scriptName.MatchString(name) {
			return nil, fmt.Errorf("script name %q: not a control file name", name)
		}
		control = append(control, entry{name: "./" + name, mode: 0o755, data: []byte(body)})
	}
	slices.SortFunc(control[1:], func(a, b entry) int { return strings.Compare(a.name, b.name) })
	var ctl bytes.Buffer
	if err := writeTar(&ctl, p.Epoch, control); err != nil {
		return nil, fmt.Errorf("control.tar: %w", err)
	}
	var out bytes.Buffer
	err = writeTar(&out, p.Epoch, []entry{
		{name: "./debian-binary", mode: 0o644, data: []byte("2.0\n")},
		{name: "./data.tar.gz", mode: 0o644, data: gzipBytes(data.Bytes())},
		{name: "./control.tar.gz", mode: 0o644, data: gzipBytes(ctl.Bytes())},
	})
	if err != nil {
		return nil, err
	}
	return gzipBytes(out.Bytes()), nil
}

var scriptName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

// entry is one member of a tar archive; name is "./..." with a trailing
// slash for directories.
type entry struct {
	name string
	mode fs.FileMode
	data []byte
	link string
}

// writeTar writes a GNU tar of entries, in order, padded to Record.
func writeTar(w *bytes.Buffer, mtime time.Time, entries []entry) error {
	start := w.Len()
	tw := tar.NewWriter(w)
	for _, e := range entries {
		h := &tar.Header{
			Name:    e.name,
			Mode:    int64(e.mode.Perm()),
			ModTime: mtime,
			Format:  tar.FormatGNU,
		}
		switch {
		case e.mode.IsDir():
			h.Typeflag = tar.TypeDir
		case e.mode&fs.ModeSymlink != 0:
			h.Typeflag = tar.TypeSymlink
			h.Linkname = e.link
		default:
			h.Typeflag = tar.TypeReg
			h.Size = int64(len(e.data))
		}
		if err := tw.WriteHeader(h); err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
		if _, err := tw.Write(e.data); err != nil {
			return fmt.Errorf("%s: %w", e.name, err)
		}
	}
	if err := tw.Close(); err != nil {
		return err
	}
	if n := (w.Len() - start) % Record; n != 0 {
		w.Write(make([]byte, Record-n))
	}
	return nil
}

// gzipBytes compresses b like "gzip -n": no name, no time stamp; the OS
// byte says Unix, as gzip on Linux writes it.
func gzipBytes(b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	zw.OS = 3
	zw.Write(b) // writes to a bytes.Buffer do not fail
	zw.Close()
	return buf.Bytes()
}

// node is a directory tree built from Files; children are emitted sorted
// by name, directory by directory, like tar --sort=name.
type node struct {
	file     File
	explicit bool // listed in Files, not only implied by a path below it
	children map[string]*node
}

func newTree(files []File) (*node, error) {
	root := &node{file: File{Path: "/", Mode: fs.ModeDir | 0o755}, children: map[string]*node{}}
	for _, f := range files {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path || f.Path == "/" {
			return nil, fmt.Errorf("file path %q: not a clean absolute path", f.Path)
		}
		if t := f.Mode.Type(); t != 0 && t != fs.ModeDir && t != fs.ModeSymlink {
			return nil, fmt.Errorf("file path %q: type %v is not a file, directory or symbolic link", f.Path, t)
		}
		n := root
		parts := strings.Split(f.Path[1:], "/")
		for i, p := range parts {
			if !n.file.Mode.IsDir() {
				return nil, fmt.Errorf("file path %q: %s is not a directory", f.Path, n.file.Path)
			}
			c, ok := n.children[p]
			last := i == len(parts)-1
			switch {
			case !ok:
				c = &node{file: File{Path: "/" + path.Join(parts[:i+1]...), Mode: fs.ModeDir | 0o755}}
				if last {
					c.file = f
				}
				if c.file.Mode.IsDir() {
					c.children = map[string]*node{}
				}
				n.children[p] = c
			case last && c.explicit:
				return nil, fmt.Errorf("file path %q: listed twice", f.Path)
			case last:
				// An implied parent directory listed later: take its mode.
				if !f.Mode.IsDir() {
					return nil, fmt.Errorf("file path %q: is a directory of other files", f.Path)
				}
				c.file = f
			}
			if last {
				c.explicit = true
			}
			n = c
		}
	}
	return root, nil
}

func (n *node) entries() []entry {
	var out []entry
	var walk func(n *node, name string)
	walk = func(n *node, name string) {
		e := entry{name: name, mode: n.file.Mode, data: n.file.Data, link: n.file.Link}
		if n.file.Mode.IsDir() {
			e.data = nil
		}
		out = append(out, e)
		names := make([]string, 0, len(n.children))
		for k := range n.children {
			names = append(names, k)
		}
		slices.Sort(names)
		for _, k := range names {
			c := n.children[k]
			if c.file.Mode.IsDir() {
				walk(c, name+k+"/")
			} else {
				walk(c, name+k)
			}
		}
	}
	walk(n, "./")
	return out
}

// conffiles keeps the paths that are regular files in the tree, sorted
// (ipkg-build resolves conffiles with find -type f, then sort).
func (n *node) conffiles(paths []string) []string {
	var out []string
	for _, p := range paths {
		if f, ok := n.lookup(p); ok && f.Mode.IsRegular() {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

func (n *node) lookup(p string) (File, bool) {
	if !path.IsAbs(p) {
		return File{}, false
	}
	for _, part := range strings.Split(path.Clean(p)[1:], "/") {
		c, ok := n.children[part]
		if !ok {
			return File{}, false
		}
		n = c
	}
	return n.file, true
}

// ErrInvalid is wrapped by every error about an invalid control field.
var ErrInvalid = errors.New("invalid control field")
