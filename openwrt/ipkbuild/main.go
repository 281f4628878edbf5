// Command ipkbuild cross-builds dpfd and dpf for OpenWrt routers and packs
// them, with the files/ and luci/ trees, into opkg packages, without the
// OpenWrt SDK. `make openwrt` and `make ipk` run it from the repository
// root:
//
//	ipkbuild binaries [-out bin/openwrt] [-ldflags FLAGS] [-tags TAGS] [-describe DESC -commits N]
//	ipkbuild packages [-bin bin/openwrt] [-out bin/ipk] -describe DESC -commits N -epoch SECONDS
//	ipkbuild licenses -out DIR BINARY...
//
// binaries writes bin/openwrt/<arch>/{dpfd,dpf}, static (CGO_ENABLED=0,
// -trimpath), built with BuildTags (targets.go) unless -tags says
// otherwise, and prints their sizes; with -describe the binaries carry the
// package version (main.PackageVersion, printed by --version). packages
// writes dpf_<version>_<arch>.ipk for every target and
// luci-app-dpf_<version>_all.ipk. licenses writes the licence texts of DPF
// and of every module linked into the binaries to DIR, as the dpf package
// installs them in LicenseDir: the feed Makefile (openwrt/dpf/Makefile)
// runs it. The format is described in openwrt/internal/ipk;
// openwrt/README.md says how to install and how to build in the SDK
// instead.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/dpf-router/dpf/openwrt/internal/ipk"
)

func main() {
	if err := run(context.Background(), os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "ipkbuild:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return errors.New("usage: ipkbuild binaries|packages [flags]")
	}
	fl := flag.NewFlagSet("ipkbuild "+args[0], flag.ContinueOnError)
	switch args[0] {
	case "binaries":
		out := fl.String("out", "bin/openwrt", "output directory: OUT/<arch>/dpfd and dpf")
		ldflags := fl.String("ldflags", "-s -w", "go build -ldflags (the Makefile adds the version stamp)")
		goCmd := fl.String("go", "go", "the go command")
		tags := fl.String("tags", strings.Join(BuildTags, ","), "go build -tags, comma-separated (empty: every optional part)")
		describe := fl.String("describe", "", "git describe --tags --always --dirty: stamp the package version (see packages)")
		commits := fl.Int("commits", 0, "git rev-list --count HEAD (used when there is no tag)")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		if *describe != "" {
			*ldflags += " " + PackageVersionFlag(ipk.VersionFromDescribe(*describe, *commits))
		}
		sizes, err := BuildBinaries(ctx, *goCmd, ".", *out, *ldflags, *tags)
		if err != nil {
			return err
		}
		return printSizes(stdout, *out, *tags, sizes)
	case "packages":
		o := Options{Root: "."}
		fl.StringVar(&o.BinDir, "bin", "bin/openwrt", "directory of the binaries (make openwrt)")
		out := fl.String("out", "bin/ipk", "output directory")
		describe := fl.String("describe", "", "git describe --tags --always --dirty")
		commits := fl.Int("commits", 0, "git rev-list --count HEAD (used when there is no tag)")
		fl.Int64Var(&o.Epoch, "epoch", 0, "SOURCE_DATE_EPOCH: the mtime of every file")
		fl.StringVar(&o.Maintainer, "maintainer", "", "the Maintainer field (left out when empty)")
		fl.StringVar(&o.Go, "go", "go", "the go command (its module cache and GOROOT hold the licences)")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		if *describe == "" {
			return errors.New("packages: -describe is required")
		}
		o.Version = ipk.VersionFromDescribe(*describe, *commits)
		written, err := BuildAll(o, *out)
		if err != nil {
			return err
		}
		for _, w := range written {
			st, err := os.Stat(w)
			if err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%9d  %s\n", st.Size(), w)
		}
		return nil
	case "licenses":
		out := fl.String("out", "", "output directory (the package's "+LicenseDir+")")
		goCmd := fl.String("go", "go", "the go command that built the binaries (its module cache and GOROOT hold the licences)")
		if err := fl.Parse(args[1:]); err != nil {
			return err
		}
		if *out == "" || fl.NArg() == 0 {
			return errors.New("usage: ipkbuild licenses -out DIR BINARY...")
		}
		bins := map[string][]byte{}
		for _, f := range fl.Args() {
			b, err := os.ReadFile(f)
			if err != nil {
				return err
			}
			bins[filepath.Base(f)] = b
		}
		texts, err := Licenses(*goCmd, ".", bins)
		if err != nil {
			return err
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		for name, data := range texts {
			if err := os.WriteFile(filepath.Join(*out, name), data, 0o644); err != nil {
				return err
			}
		}
		return nil
	default:
		return fmt.Errorf("unknown command %q (binaries, packages or licenses)", args[0])
	}
}

// PackageVersionFlag is the go link flag that gives dpfd and dpf the
// version of the package they are in: both print it first in --version
// ("dpfd 1.2.3+git5.4a69640-1 (v1.2.3-5-g4a69640)"), where openwrt/packages'
// CI looks for it. openwrt/dpf/Makefile sets the same variable.
func PackageVersionFlag(version string) string {
	return "-X " + PackageVersionVar + "=" + version
}

// PackageVersionVar is the variable of both commands' main packages that
// holds the package version; empty (make build) leaves it out of --version.
const PackageVersionVar = "main.PackageVersion"

// BuildBinaries builds every Binaries entry for every target into
// out/<arch>/ with the go command goCmd, run in the module root dir, with
// the build tags tags (comma-separated; BuildTags for the packages), and
// returns the sizes by arch and binary name. The binaries are static:
// CGO_ENABLED=0, so nothing links against the router's musl.
func BuildBinaries(ctx context.Context, goCmd, dir, out, ldflags, tags string) (map[string]map[string]int64, error) {
	sizes := map[string]map[string]int64{}
	for _, t := range Targets {
		dst, err := filepath.Abs(filepath.Join(out, t.Arch))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(dst, 0o755); err != nil {
			return nil, err
		}
		args := []string{"build", "-trimpath", "-ldflags", ldflags, "-tags", tags, "-o", dst + "/"}
		for _, b := range Binaries {
			args = append(args, b.Pkg)
		}
		cmd := exec.CommandContext(ctx, goCmd, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+t.GOARCH)
		cmd.Env = append(cmd.Env, t.Env...)
		if b, err := cmd.CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: go %s: %v\n%s", t.Arch, strings.Join(args, " "), err, b)
		}
		sizes[t.Arch] = map[string]int64{}
		for _, b := range Binaries {
			st, err := os.Stat(filepath.Join(dst, b.Name))
			if err != nil {
				return nil, err
			}
			sizes[t.Arch][b.Name] = st.Size()
		}
	}
	return sizes, nil
}

// printSizes writes the table of sizes in bytes and in MB (10^6 bytes, the
// unit of MaxDPFDSize), flagging a dpfd over that limit, after a line
// naming the build tags.
func printSizes(w io.Writer, out, tags string, sizes map[string]map[string]int64) error {
	switch tags {
	case strings.Join(BuildTags, ","):
		tags += " (BuildTags, openwrt/ipkbuild/targets.go)"
	case "":
		tags = "none"
	}
	fmt.Fprintf(w, "build tags: %s; dpfd limit %d bytes\n", tags, MaxDPFDSize)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "%s/\t", out)
	for _, b := range Binaries {
		fmt.Fprintf(tw, "%s\t", b.Name)
	}
	fmt.Fprintln(tw)
	for _, t := range Targets {
		fmt.Fprintf(tw, "%s\t", t.Arch)
		for _, b := range Binaries {
			n := sizes[t.Arch][b.Name]
			over := ""
			if b.Name == "dpfd" && n > MaxDPFDSize {
				over = " OVER LIMIT"
			}
			fmt.Fprintf(tw, "%d (%.2f MB)%s\t", n, float64(n)/1e6, over)
		}
		fmt.Fprintln(tw)
	}
	return tw.Flush()
}
