# DPF - dynamic port forwarding for Linux routers.
#
#   make demo    network namespaces: a LAN server gets a pinhole, the internet connects (root)
#   make test    install what the tests need, then run every test (root for the system tests)
#   make build   host binaries in bin/
#   make fuzz    run each parser's fuzz target for FUZZTIME
#   make openwrt static dpfd and dpf for OpenWrt's architectures in bin/openwrt/<arch>/
#   make ipk     opkg packages (OpenWrt 22.03-24.10) in bin/ipk/, without the SDK
#   make qemu-test  the unit tests on big-endian MIPS and 32-bit ARM under qemu-user
#   make soak    50 LAN hosts x 50 mappings renewing for SOAK_DURATION (10m): memory, goroutines, fds stay flat (root)
#   make bench   dpfd (nftables, iptables) against miniupnpd in network namespaces: bench-report.md (root, up to ~1 h)

GO        ?= go
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/dpf-router/dpf/src/daemon.Version=$(VERSION) -X main.Version=$(VERSION)
CC        ?= gcc
PRELOAD_CFLAGS := -O2 -g0 -fPIC -shared -Wall -Wextra -Werror
GOFLAGS_BUILD := -trimpath -ldflags "$(LDFLAGS)"
FUZZTIME  ?= 30s
ARTIFACTS ?= test-artifacts

# Debian packages the tests and the demo use: netfilter tools and a
# PCP/NAT-PMP client for the daemon; for the client side, miniupnpd as a
# second gateway, coturn as an RFC 5780 STUN server, gcc for the LD_PRELOAD
# shim, and socat and python3 as legacy servers for `dpf run`.
# qemu-user-static runs the unit tests built for MIPS and ARM (qemu-test);
# dbus-daemon and dbus-bin (dbus-send, dbus-monitor) test the D-Bus service;
# chromium renders the LuCI page (driven by playwright-core from npm, see
# luci/test; Node.js and npm come from Debian when the machine has none).
DEB_PACKAGES := nftables iptables natpmpc iproute2 miniupnpd-nftables coturn gcc libc6-dev socat python3 \
	qemu-user-static dbus-daemon dbus-bin chromium e2fsprogs

# OpenWrt: the architectures (mips_24kc, mipsel_24kc, arm_cortex-a7,
# aarch64_cortex-a53, x86_64) and their GOARCH settings are listed once, in
# openwrt/ipkbuild/targets.go. Packages carry SOURCE_DATE_EPOCH (the last
# commit's time unless set) as every file's mtime, so the same tree gives
# the same bytes. The binaries are built with the Go build tags listed
# there too (BuildTags: nodbus, which leaves D-Bus out to keep the mipsle
# dpfd under 6 MB); OPENWRT_TAGS overrides them: `make openwrt OPENWRT_TAGS=`
# builds every optional part in, OPENWRT_TAGS=nodbus,noiptables the smallest.
OPENWRT_BIN ?= bin/openwrt
IPK_DIR   ?= bin/ipk
IPK_MAINTAINER ?=
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
GIT_COMMITS := $(shell git rev-list --count HEAD 2>/dev/null || echo 0)
IPKBUILD  := $(GO) run ./openwrt/ipkbuild

# qemu-test: the pure packages, built for big-endian 32-bit MIPS (the most
# common router CPU) and 32-bit ARM with the settings of the packages, run
# under qemu-user. Three tests cannot run there: TestCrashKeepsAcknowledgedLeases
# re-executes its own test binary, which without binfmt_misc the kernel
# cannot start, and TestDumpLoopback needs NETLINK_SOCK_DIAG, which
# qemu-user does not translate (it only handles NETLINK_ROUTE, _AUDIT and
# _KOBJECT_UEVENT); the sock_diag codec itself is tested there.
# TestSteeringBySource attaches a SO_ATTACH_REUSEPORT_CBPF program, a socket
# option qemu-user refuses with ENOPROTOOPT (dpfd then falls back to one
# socket, as it should); the program's instructions are host-order structs the kernel
# reads, so byte order cannot break it.
QEMU_PKGS := ./src/pcp ./src/natpmp ./src/config ./src/policy ./src/lease/... ./src/store ./src/server ./src/control \
	./client ./client/cmd/dpf ./client/nattype ./client/internal/sockdiag ./src/internal/listening ./src/internal/ifaddr
QEMU_SKIP := ^(TestCrashKeepsAcknowledgedLeases|TestDumpLoopback|TestSteeringBySource)$$
QEMU_TARGETS := mips:GOMIPS=softfloat:qemu-mips-static arm:GOARM=7,softfloat:qemu-arm-static

.PHONY: all build demo test deps unit fuzz clean openwrt ipk qemu-test soak

all: build

build: bin/libdpf-preload.so
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/dpfd ./src/cmd/dpfd
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/dpf ./client/cmd/dpf
	CGO_ENABLED=0 $(GO) build $(GOFLAGS_BUILD) -o bin/dpf-demo ./src/cmd/dpf-demo

# The LD_PRELOAD shim `dpf run` loads into dynamically linked programs; dpf
# finds it next to itself.
bin/libdpf-preload.so: client/preload/dpf_preload.c
	@mkdir -p bin
	$(CC) $(PRELOAD_CFLAGS) -o $@ $< -ldl -pthread

# Installs missing Debian packages (as root, with apt-get) and the Go modules.
deps:
	@missing=""; for p in $(DEB_PACKAGES); do \
	  dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" != 0 ]; then echo "missing Debian packages:$$missing (run as root to install them)"; exit 1; fi; \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if ! command -v npm >/dev/null 2>&1; then \
	  if [ "$$(id -u)" != 0 ]; then echo "npm is missing (run as root to install nodejs and npm)"; exit 1; fi; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nodejs npm >/dev/null; \
	fi
	cd luci/test && npm ci --no-audit --no-fund --loglevel=error
	$(GO) mod download

demo: deps build
	./bin/dpf-demo -dpfd bin/dpfd -dpf bin/dpf

# All tests. As root (and always in CI) tests that need root must run: a
# skip is turned into a failure (DPF_REQUIRE_ROOT_TESTS=1) and any SKIP line
# fails the run. CLOCK_TESTS set the system clock, so they are left out of
# the parallel run and run afterwards, alone, with DPF_CLOCK_TESTS=1; their
# output goes to the same log and counts in the same summary.
CLOCK_TESTS := ^TestRebootWallClock$$
# The build tags that leave optional parts out (see openwrt/ipkbuild/targets.go):
# that build must vet, and its tests (TestWithout*) check the errors it gives.
SMALL_TAGS := nodbus,noiptables

test: deps
	@mkdir -p $(ARTIFACTS)
	@unformatted=$$(gofmt -l src client openwrt 2>/dev/null); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	$(GO) vet -tags $(SMALL_TAGS) ./...
	$(GO) test -count=1 -tags $(SMALL_TAGS) -run '^TestWithout' ./src/daemon ./src/firewall
	@qemu=0; $(MAKE) --no-print-directory qemu-test || qemu=1; \
	require=0; if [ "$$(id -u)" = 0 ] || [ -n "$$CI" ]; then require=1; fi; \
	DPF_ARTIFACTS=$(abspath $(ARTIFACTS)) DPF_REQUIRE_ROOT_TESTS=$$require $(GO) test -count=1 -v -timeout 20m -skip '$(CLOCK_TESTS)' ./... > $(ARTIFACTS)/go-test.log 2>&1; \
	status=$$?; \
	DPF_ARTIFACTS=$(abspath $(ARTIFACTS)) DPF_REQUIRE_ROOT_TESTS=$$require DPF_CLOCK_TESTS=1 $(GO) test -count=1 -v -timeout 5m -run '$(CLOCK_TESTS)' ./src/systest/ >> $(ARTIFACTS)/go-test.log 2>&1 || status=1; \
	grep -E '^(ok|FAIL|panic:|---|    --- (FAIL|SKIP))' $(ARTIFACTS)/go-test.log | grep -v -- '--- PASS' ; \
	passed=$$(grep -cE '^ *--- PASS' $(ARTIFACTS)/go-test.log); \
	failed=$$(grep -cE '^ *--- FAIL' $(ARTIFACTS)/go-test.log); \
	skipped=$$(grep -cE '^ *--- SKIP' $(ARTIFACTS)/go-test.log); \
	if [ $$status != 0 ]; then awk -f .ci/failures.awk $(ARTIFACTS)/go-test.log | head -400; fi; \
	if [ $$require = 1 ] && [ $$skipped != 0 ]; then echo "skipped tests are failures here:"; grep -E '^ *--- SKIP' -A2 $(ARTIFACTS)/go-test.log; status=1; fi; \
	if [ $$qemu != 0 ]; then echo "the qemu-user tests failed (make qemu-test, $(ARTIFACTS)/qemu-*.log)"; status=1; fi; \
	echo "$$passed passed, $$failed failed, $$skipped skipped"; \
	exit $$status

# Fast tests only (no root needed; root-only tests skip).
unit:
	DPF_REQUIRE_ROOT_TESTS=0 $(GO) test -count=1 -short ./src/natpmp ./src/pcp ./src/config ./src/policy ./src/lease/... ./src/store ./src/server ./src/clock \
	  ./client ./client/nattype ./client/internal/sockdiag

# Each parser's fuzz target for FUZZTIME. New interesting inputs land in the
# Go cache; copy them to testdata/fuzz/ to keep them.
fuzz:
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./src/pcp
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponse$$' -fuzztime=$(FUZZTIME) ./src/pcp
	$(GO) test -run='^$$' -fuzz='^FuzzParseAuth$$' -fuzztime=$(FUZZTIME) ./src/pcp
	$(GO) test -run='^$$' -fuzz='^FuzzParseAuthKey$$' -fuzztime=$(FUZZTIME) ./src/pcp
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./src/natpmp
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponse$$' -fuzztime=$(FUZZTIME) ./src/natpmp
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./src/config
	$(GO) test -run='^$$' -fuzz='^FuzzParseMessages$$' -fuzztime=$(FUZZTIME) ./client/internal/sockdiag
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./client/internal/agent
	$(GO) test -run='^$$' -fuzz='^FuzzHandle$$' -fuzztime=$(FUZZTIME) ./client/nattype
	$(GO) test -run='^$$' -fuzz='^FuzzChangeRequest$$' -fuzztime=$(FUZZTIME) ./client/nattype
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./src/internal/listening
	$(GO) test -run='^$$' -fuzz='^FuzzParseVmRSS$$' -fuzztime=$(FUZZTIME) ./src/daemon
	$(GO) test -run='^$$' -fuzz='^FuzzJournalScan$$' -fuzztime=$(FUZZTIME) ./src/store
	$(GO) test -run='^$$' -fuzz='^FuzzParseWords$$' -fuzztime=$(FUZZTIME) ./src/policy
	$(GO) test -run='^$$' -fuzz='^FuzzParseTag$$' -fuzztime=$(FUZZTIME) ./src/firewall
	$(GO) test -run='^$$' -fuzz='^FuzzParseRoute$$' -fuzztime=$(FUZZTIME) ./client
	$(GO) test -run='^$$' -fuzz='^FuzzParseStat$$' -fuzztime=$(FUZZTIME) ./client/internal/agent
	$(GO) test -run='^$$' -fuzz='^FuzzParseCPULine$$' -fuzztime=$(FUZZTIME) ./src/bench
	$(GO) test -run='^$$' -fuzz='^FuzzParseBlockStat$$' -fuzztime=$(FUZZTIME) ./src/bench
	$(GO) test -run='^$$' -fuzz='^FuzzParseControl$$' -fuzztime=$(FUZZTIME) ./openwrt/internal/ipk
	$(GO) test -run='^$$' -fuzz='^FuzzParseNFNL$$' -fuzztime=$(FUZZTIME) ./src/firewall
	$(GO) test -run='^$$' -fuzz='^FuzzParseMessages$$' -fuzztime=$(FUZZTIME) ./src/internal/ifaddr

# The unit tests for each QEMU_TARGETS entry (GOARCH:variant:emulator) under
# qemu-user, logged to $(ARTIFACTS)/qemu-GOARCH.log. Failures and skips are
# printed (root-only tests skip here: they run natively in `make test`),
# then one summary line per architecture.
qemu-test:
	@mkdir -p $(ARTIFACTS)
	@status=0; for t in $(QEMU_TARGETS); do \
	  arch=$${t%%:*}; rest=$${t#*:}; variant=$${rest%%:*}; qemu=$${rest#*:}; \
	  if ! command -v $$qemu >/dev/null; then echo "$$qemu not found (Debian package qemu-user-static; make deps)"; exit 1; fi; \
	  log=$(ARTIFACTS)/qemu-$$arch.log; \
	  env CGO_ENABLED=0 GOARCH=$$arch $$variant DPF_REQUIRE_ROOT_TESTS=0 \
	    $(GO) test -trimpath -count=1 -v -timeout 10m -exec $$qemu -skip '$(QEMU_SKIP)' $(QEMU_PKGS) > $$log 2>&1; \
	  s=$$?; \
	  grep -E '^(FAIL|panic:|    --- (FAIL|SKIP)|--- (FAIL|SKIP))' $$log; \
	  if [ $$s != 0 ]; then status=1; \
	    if grep -qE '^ *--- FAIL' $$log; then grep -B2 -A30 -E '^ *--- FAIL' $$log | head -100; else tail -40 $$log; fi; fi; \
	  echo "qemu $$arch ($$variant): $$(grep -cE '^ *--- PASS' $$log) passed, $$(grep -cE '^ *--- FAIL' $$log) failed, $$(grep -cE '^ *--- SKIP' $$log) skipped"; \
	done; exit $$status

# Static dpfd and dpf for every OpenWrt architecture, with their sizes.
# They carry the version of the package make ipk puts them in, which
# --version prints before git describe ("dpfd 0.0.0+git28.4a69640-1 (4a69640)");
# make build leaves it out.
openwrt:
	$(IPKBUILD) binaries -out $(OPENWRT_BIN) -ldflags "$(LDFLAGS)" -describe "$(VERSION)" -commits $(GIT_COMMITS) \
	  $(if $(filter undefined,$(origin OPENWRT_TAGS)),,-tags "$(OPENWRT_TAGS)")

# dpf_<version>_<arch>.ipk for every architecture and luci-app-dpf_<version>_all.ipk
# (see openwrt/README.md). The version comes from git describe. The dpf
# package holds LICENSE and the licence of every module linked into dpfd
# and dpf (read from their build information and the module cache of $(GO))
# in /usr/share/licenses/dpf/.
ipk: openwrt
	$(IPKBUILD) packages -bin $(OPENWRT_BIN) -out $(IPK_DIR) -describe "$(VERSION)" \
	  -commits $(GIT_COMMITS) -epoch $(SOURCE_DATE_EPOCH) -maintainer "$(IPK_MAINTAINER)" -go "$(GO)"

clean:
	rm -rf bin $(ARTIFACTS)

# The long soak test: 50 LAN hosts (network namespaces) hold 50 mappings
# each and renew them every few seconds for SOAK_DURATION while dpfd's
# memory, goroutines and open files are sampled (written to
# $(ARTIFACTS)/soak.csv). `make test` runs the same test for 45 s.
# SOAK_TIMEOUT must exceed SOAK_DURATION by the set-up (a few minutes).
SOAK_DURATION ?= 10m
SOAK_TIMEOUT ?= 40m
soak:
	@mkdir -p $(ARTIFACTS)
	DPF_ARTIFACTS=$(abspath $(ARTIFACTS)) DPF_REQUIRE_ROOT_TESTS=1 DPF_SOAK_DURATION=$(SOAK_DURATION) \
	  $(GO) test -count=1 -v -timeout $(SOAK_TIMEOUT) -run '^TestSoak$$' ./src/systest

# The benchmark of issue 6: dpfd with both backends against Debian's
# miniupnpd-nftables and miniupnpd-iptables (downloaded and unpacked into
# bin/bench-cache when not installed), N = 100, 1,000, 10,000 mappings,
# 3 runs per figure, and the OpenWrt builds' sizes (built afresh). Writes
# bench-report.md and bench-report.json; src/bench/README.md explains the
# figures and has the latest full run. With -budget 2m (each fill step of
# a slow daemon stops after 2 minutes) it takes about an hour. Try
# BENCH_ARGS="-sizes 100,1000 -runs 1" for a shorter run, or -quick.
BENCH_ARGS ?=
.PHONY: bench
bench: deps build
	$(GO) run ./src/cmd/dpf-bench -dpfd bin/dpfd -openwrt-build -out bench-report.md $(BENCH_ARGS)
