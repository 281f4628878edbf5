# DPF - dynamic port forwarding for Linux routers.
#
#   make demo    network namespaces: a LAN server gets a pinhole, the internet connects (root)
#   make test    install what the tests need, then run every test (root for the system tests)
#   make build   host binaries in bin/
#   make fuzz    run each parser's fuzz target for FUZZTIME

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
DEB_PACKAGES := nftables iptables natpmpc iproute2 miniupnpd-nftables coturn gcc libc6-dev socat python3

.PHONY: all build demo test deps unit fuzz clean

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
	$(GO) mod download

demo: deps build
	./bin/dpf-demo -dpfd bin/dpfd -dpf bin/dpf

# All tests. As root (and always in CI) tests that need root must run: a
# skip is turned into a failure (DPF_REQUIRE_ROOT_TESTS=1) and any SKIP line
# fails the run.
test: deps
	@mkdir -p $(ARTIFACTS)
	@unformatted=$$(gofmt -l src client 2>/dev/null); \
	if [ -n "$$unformatted" ]; then echo "not gofmt-formatted:"; echo "$$unformatted"; exit 1; fi
	$(GO) vet ./...
	@require=0; if [ "$$(id -u)" = 0 ] || [ -n "$$CI" ]; then require=1; fi; \
	DPF_REQUIRE_ROOT_TESTS=$$require $(GO) test -count=1 -v -timeout 20m ./... > $(ARTIFACTS)/go-test.log 2>&1; \
	status=$$?; \
	grep -E '^(ok|FAIL|panic:|---|    --- (FAIL|SKIP))' $(ARTIFACTS)/go-test.log | grep -v -- '--- PASS' ; \
	passed=$$(grep -cE '^ *--- PASS' $(ARTIFACTS)/go-test.log); \
	failed=$$(grep -cE '^ *--- FAIL' $(ARTIFACTS)/go-test.log); \
	skipped=$$(grep -cE '^ *--- SKIP' $(ARTIFACTS)/go-test.log); \
	if [ $$status != 0 ]; then grep -B2 -A30 -E '^ *--- FAIL' $(ARTIFACTS)/go-test.log | head -200; fi; \
	if [ $$require = 1 ] && [ $$skipped != 0 ]; then echo "skipped tests are failures here:"; grep -E '^ *--- SKIP' -A2 $(ARTIFACTS)/go-test.log; status=1; fi; \
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
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./src/natpmp
	$(GO) test -run='^$$' -fuzz='^FuzzParseResponse$$' -fuzztime=$(FUZZTIME) ./src/natpmp
	$(GO) test -run='^$$' -fuzz='^FuzzParse$$' -fuzztime=$(FUZZTIME) ./src/config
	$(GO) test -run='^$$' -fuzz='^FuzzParseMessages$$' -fuzztime=$(FUZZTIME) ./client/internal/sockdiag
	$(GO) test -run='^$$' -fuzz='^FuzzParseRequest$$' -fuzztime=$(FUZZTIME) ./client/internal/agent
	$(GO) test -run='^$$' -fuzz='^FuzzHandle$$' -fuzztime=$(FUZZTIME) ./client/nattype
	$(GO) test -run='^$$' -fuzz='^FuzzChangeRequest$$' -fuzztime=$(FUZZTIME) ./client/nattype

clean:
	rm -rf bin $(ARTIFACTS)
