package main

// PackageVersion is the version of the OpenWrt package dpfd is built for,
// set at build time (-ldflags "-X main.PackageVersion=..." by make openwrt,
// make ipk and openwrt/dpf/Makefile); empty in other builds (make build).
var PackageVersion string

// versionLine is what "dpfd version" and --version print: the package
// version first, where openwrt/packages' CI looks for it, then the
// source's git describe (daemon.Version), which status and logs show.
func versionLine(describe string) string {
	if PackageVersion == "" || PackageVersion == describe {
		return "dpfd " + describe
	}
	return "dpfd " + PackageVersion + " (" + describe + ")"
}
