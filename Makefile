# Sluice. Two commands on a fresh machine: `make run` and `make test`.
# Downloads and caches live outside the clone ($HOME/.cache/sluice, the Go
# module and build caches, npm's cache).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
GO ?= go
BIN ?= bin/sluice
# VERSION is the release tag (vX.Y.Z) on HEAD, if any; other builds report the
# source's base version with -dev (cmd/sluice/version.go). COMMIT is HEAD,
# with +modified for a dirty tree.
VERSION ?= $(shell git describe --tags --exact-match --match 'v[0-9]*' 2>/dev/null)
COMMIT ?= $(shell git rev-parse HEAD 2>/dev/null)$(shell git diff --quiet HEAD -- 2>/dev/null || echo +modified)
LDFLAGS := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
export SLUICE_TOOLS_DIR ?= $(HOME)/.cache/sluice

# Packages whose tests run under -race; the Wasm-executing ones run without it
# (wazero under the race detector is several times slower and the host's own
# concurrency tests use their own hammer). Override with RACE_PKGS=./...
PKGS := $(shell $(GO) list ./... 2>/dev/null)
NORACE_RE ?= /host$$|/host/|/plugins$$|/examples/|/wasmtest$$
NORACE_PKGS := $(shell printf '%s\n' $(PKGS) | grep -E '$(NORACE_RE)')
RACE_PKGS ?= $(filter-out $(NORACE_PKGS),$(PKGS))
TEST_TIMEOUT ?= 25m
# A count, not a duration: Go 1.26's fuzz coordinator can fail a clean run
# with "context deadline exceeded" when a -fuzztime duration expires
# mid-execution (golang/go#75804, fixed in Go 1.27).
FUZZTIME ?= 2000x

.PHONY: all build run test test-go faults bench bench-load bench-replicas bench-failover bench-slow-bodies bench-idle-tunnels plugins examples lint generate fuzz-smoke clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/sluice

# relay + agent + demo MCP server in one process; prints the URL to use.
run: build
	$(BIN) dev

# Installs user-level test dependencies (npm packages, Go tools) when the
# script exists, then runs every test.
test:
	@if [[ -x .ci/deps.sh ]]; then .ci/deps.sh; fi
	$(MAKE) test-go
	$(MAKE) faults

test-go:
	@if [[ -n "$(strip $(RACE_PKGS))" ]]; then \
		echo "go test -race ($(words $(RACE_PKGS)) packages)"; \
		$(GO) test -race -timeout $(TEST_TIMEOUT) $(RACE_PKGS); fi
	@if [[ -n "$(strip $(NORACE_PKGS))" ]]; then \
		echo "go test ($(words $(NORACE_PKGS)) packages with Wasm guests)"; \
		$(GO) test -timeout $(TEST_TIMEOUT) $(NORACE_PKGS); fi

# The fault suite (engine/faults): real relay, agent and MCP server
# processes under load, killed, frozen, restarted and starved by PID; each
# scenario prints its classified call counts.
FAULTS_RUN ?= .
faults:
	SLUICE_FAULTS=1 $(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run '$(FAULTS_RUN)' ./engine/faults/ 2>&1 | \
		grep -Ev '^=== (RUN|PAUSE|CONT)'  # pipefail: the go test status stands

# Go benchmarks, then the end-to-end load tool.
bench:
	$(GO) test -run '^$$' -bench . -benchmem -count 1 ./...
	$(MAKE) bench-load

# The end-to-end load run: 1 KiB tools/call on loopback, directly against an
# mcp-go echo server and through relay + agent (separate processes), at
# concurrency 1 and 64, with and without the default plugin chain, and the
# same echo tool served by a Wasm binding plugin in the agent, in one run;
# prints calls/s, p50/p99, the ratios and the RSS of both halves.
BENCH_LOAD_FLAGS ?= -duration 5s -concurrency 1,64 -pipeline redact -compare-chain -binding
bench-load: build
	$(GO) build -o bin/sluice-bench ./cmd/sluice-bench
	bin/sluice-bench -sluice $(BIN) $(BENCH_LOAD_FLAGS)

# The relay's queue on NATS (nats-server installed by .ci/deps.sh): one relay
# with the in-process queue, one on NATS, and three on NATS serving one
# tunnel, at concurrency 1 and 64, in one run; prints the ratios.
BENCH_REPLICAS_FLAGS ?= -duration 5s -concurrency 1,64 -startup=false
bench-replicas: build
	@if [[ -x .ci/deps.sh ]]; then .ci/deps.sh >/dev/null; fi
	$(GO) build -o bin/sluice-bench ./cmd/sluice-bench
	bin/sluice-bench -sluice $(BIN) $(BENCH_REPLICAS_FLAGS) -nats $(SLUICE_TOOLS_DIR)/bin/nats-server

# A replica killed under c=64 load (three relays on a 3-node NATS cluster,
# two agents, a round-robin client): the fault scenario three times, its
# figures (calls lost, errors on the other replicas, p99 around the
# failover).
bench-failover:
	SLUICE_FAULTS=1 $(GO) test -count=3 -v -timeout $(TEST_TIMEOUT) -run '^TestReplicaKilled$$' ./engine/faults/ 2>&1 | \
		grep -E 'calls in|killed replica held|^(--- |ok|FAIL)'

# The slow-body attack (3,000 trickling connections on one key) against a
# steady key, five attacked and quiet windows interleaved: the steady key's
# calls/s and p50 under attack against without, and the relay's RSS.
bench-slow-bodies:
	SLUICE_FAULTS=1 $(GO) test -count=1 -v -timeout $(TEST_TIMEOUT) -run '^TestSlowBodiesDoNotStarveOtherKeys$$' ./engine/faults/ 2>&1 | \
		grep -E 'attack:|relay RSS|round [0-9]|median over|^(--- |ok|FAIL)'

# Many idle tunnels on one relay: c=1 on a relay serving one tunnel and on
# one serving 10,000 more (made through the admin API, each with an idle
# agent holding a long-poll, simulated by a process of its own; needs about
# 10,000 open files per process), in interleaved rounds after both relays
# reached a steady heap; prints the p50 of each, their ratio, the relay's
# RSS and what the idle agents cost. About four minutes.
IDLE_TUNNELS ?= 10000
BENCH_IDLE_FLAGS ?= -duration 5s -rounds 6
bench-idle-tunnels: build
	$(GO) build -o bin/sluice-bench ./cmd/sluice-bench
	bin/sluice-bench -sluice $(BIN) -idle-tunnels $(IDLE_TUNNELS) $(BENCH_IDLE_FLAGS)

# Rebuild the first-party plugins' committed .wasm modules.
plugins:
	@if [[ -x plugins/build.sh ]]; then plugins/build.sh; \
	elif [[ -f plugins/build.sh ]]; then bash plugins/build.sh; \
	else echo "plugins: plugins/build.sh not present"; fi

# Build the example filters (examples/LANG-filter/LANG-filter.wasm) in Go, C,
# Rust, WAT and AssemblyScript; a language whose toolchain is missing is
# skipped with a message (the AssemblyScript packages come from .ci/deps.sh).
examples:
	@if [[ -x .ci/deps.sh ]]; then .ci/deps.sh >/dev/null; fi
	@bash examples/build.sh || { s=$$?; [[ $$s -eq 3 ]] || exit $$s; }

# Rewrite the committed generated files: the plugin templates' copies of
# sdk/sluice.h and sdk/sluice.rs (cmd/sluice/plugin.go). The tests fail while
# one is stale.
generate:
	$(GO) generate ./...

lint:
	$(GO) vet ./...
	@out="$$(gofmt -l $$(git ls-files '*.go'))"; \
	if [[ -n "$$out" ]]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi

# Each fuzz target for FUZZTIME (corpus and cache stay in GOCACHE); narrow
# with FUZZ_PKGS and FUZZ_MATCH (CI runs the config loader's targets:
# FuzzConfigLoad and FuzzConfigValue in ./cmd/sluice).
FUZZ_PKGS ?= $(PKGS)
FUZZ_MATCH ?= ^Fuzz
fuzz-smoke:
	@for pkg in $(FUZZ_PKGS); do \
		for f in $$($(GO) test -list '$(FUZZ_MATCH)' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin
