package main

import (
	"debug/elf"
	"encoding/binary"
)

// Target is one OpenWrt package architecture and the Go port that runs on
// it. The Go settings follow lang/golang/golang-values.mk in
// openwrt/packages, which derives them from the target's CPU and FPU.
type Target struct {
	Arch   string   // OpenWrt package architecture (opkg "Architecture")
	GOARCH string   // GOOS is always linux
	Env    []string // GOMIPS, GOARM, ...: the variant of GOARCH

	// What the binaries must be (checked by the tests).
	Machine elf.Machine
	Order   binary.ByteOrder
	Class   elf.Class
}

// Targets are the architectures `make openwrt` and `make ipk` build for.
//
// The 24Kc cores of mips_24kc and mipsel_24kc routers have no FPU, so Go
// must emulate floating point (GOMIPS=softfloat), as OpenWrt's golang does.
// OpenWrt's arm_cortex-a7 is the ARMv7 target without an FPU in its ABI
// (FPU-equipped boards use arm_cortex-a7_neon-vfpv4); OpenWrt's golang
// builds GOARM=5 there. "7,softfloat" keeps ARMv7 instructions and, like
// GOARM=5, never executes a VFP instruction.
var Targets = []Target{
	{Arch: "mips_24kc", GOARCH: "mips", Env: []string{"GOMIPS=softfloat"},
		Machine: elf.EM_MIPS, Order: binary.BigEndian, Class: elf.ELFCLASS32},
	{Arch: "mipsel_24kc", GOARCH: "mipsle", Env: []string{"GOMIPS=softfloat"},
		Machine: elf.EM_MIPS, Order: binary.LittleEndian, Class: elf.ELFCLASS32},
	{Arch: "arm_cortex-a7", GOARCH: "arm", Env: []string{"GOARM=7,softfloat"},
		Machine: elf.EM_ARM, Order: binary.LittleEndian, Class: elf.ELFCLASS32},
	{Arch: "aarch64_cortex-a53", GOARCH: "arm64", Env: []string{"GOARM64=v8.0"},
		Machine: elf.EM_AARCH64, Order: binary.LittleEndian, Class: elf.ELFCLASS64},
	{Arch: "x86_64", GOARCH: "amd64", Env: []string{"GOAMD64=v1"},
		Machine: elf.EM_X86_64, Order: binary.LittleEndian, Class: elf.ELFCLASS64},
}

// BuildTags are the Go build tags of the OpenWrt binaries (go build -tags).
//
// nodbus leaves dpfd's D-Bus interface out (src/daemon/nodbus.go): OpenWrt
// systems rarely run a D-Bus system bus, and ubus (the rpcd plugin, which
// LuCI uses) and the control socket offer the same status, leases and
// delete. It is by far the largest optional part: godbus exports methods
// through reflect.Value.Method, and any such call makes the linker keep
// every exported method of every type in the program, so D-Bus costs about
// 1.7 MB of a 7.5 MB mipsle dpfd, most of it code nothing calls. Option
// dbus 'auto' (the default) then only logs that D-Bus is absent; option
// dbus '1' stops dpfd with an error naming the tag.
//
// The iptables backend stays (build tag noiptables would drop it and save
// about 0.26 MB more): fw4 (OpenWrt 22.03 and later) is nftables, but
// images that still run iptables-legacy rely on auto picking iptables.
var BuildTags = []string{"nodbus"}

// MaxDPFDSize is the largest dpfd binary a target may have, in bytes: the
// size goal for small-flash routers (issue 6: the static mipsle binary at
// most 6 MB). The tests check every target against it.
const MaxDPFDSize = 6_000_000

// Binaries are the commands packaged for routers: the import path to build
// and where the package installs it.
var Binaries = []struct {
	Pkg, Name, Path string
}{
	{"./src/cmd/dpfd", "dpfd", "/usr/sbin/dpfd"},
	{"./client/cmd/dpf", "dpf", "/usr/bin/dpf"},
}
