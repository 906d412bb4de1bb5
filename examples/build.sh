#!/usr/bin/env bash
# Builds the example filters (examples/LANG-filter) into their directories,
# or into DIR with `examples/build.sh DIR [LANG...]` (LANG: go c rust wat
# assemblyscript; default all). A language whose toolchain is missing is
# skipped with a message; the exit status is then 3 (0 when all were built).
# Toolchains: Go; clang + lld (C); Debian's rustc with the wasm32 std (Rust);
# wabt (WAT); Node with the npm packages assemblyscript and @extism/as-pdk
# (AssemblyScript: examples/assemblyscript-filter/node_modules after `npm ci`
# there, else $SLUICE_TOOLS_DIR/npm/node_modules from .ci/deps.sh).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
out="${1:-}"
shift || true
langs=("$@")
((${#langs[@]})) || langs=(go c rust wat assemblyscript)
if [[ -n "$out" ]]; then mkdir -p "$out" && out="$(cd "$out" && pwd)"; fi
dest() { if [[ -n "$out" ]]; then echo "$out/$1-filter.wasm"; else echo "$root/examples/$1-filter/$1-filter.wasm"; fi; }
# Tools, each overridable from the environment. Debian's rustc (it has the
# wasm32 std) is preferred over a rustup toolchain earlier on PATH.
GO="${GO:-go}"
CLANG="${CLANG:-clang}"
WAT2WASM="${WAT2WASM:-wat2wasm}"
NODE="${NODE:-node}"
if [[ -z "${RUSTC:-}" ]]; then
	RUSTC=rustc
	[[ -x /usr/bin/rustc ]] && RUSTC=/usr/bin/rustc
fi
missing=0
need() {
	if ! command -v "$1" >/dev/null 2>&1; then
		echo "examples: skipping $2: $1 not found" >&2
		missing=1
		return 1
	fi
}
for lang in "${langs[@]}"; do
	d="$(dest "$lang")"
	case "$lang" in
	go)
		need "$GO" go || continue
		GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOFLAGS= "$GO" build -buildmode=c-shared -trimpath -buildvcs=false \
			-ldflags='-s -w -buildid=' -o "$d" ./examples/go-filter
		;;
	c)
		need "$CLANG" c || continue
		"$CLANG" -O2 --target=wasm32-unknown-unknown -mbulk-memory -nostdlib -Wl,--no-entry -Wl,--strip-all \
			-I sdk -o "$d" examples/c-filter/filter.c
		;;
	rust)
		need "$RUSTC" rust || continue
		(cd examples/rust-filter && "$RUSTC" --target wasm32-unknown-unknown --crate-type cdylib -O -C strip=symbols lib.rs -o "$d")
		;;
	wat)
		need "$WAT2WASM" wat || continue
		"$WAT2WASM" examples/wat-filter/filter.wat -o "$d"
		;;
	assemblyscript)
		need "$NODE" assemblyscript || continue
		nm="$root/examples/assemblyscript-filter/node_modules"
		[[ -d "$nm/assemblyscript" ]] || nm="${SLUICE_TOOLS_DIR:-$HOME/.cache/sluice}/npm/node_modules"
		if [[ ! -d "$nm/assemblyscript" || ! -d "$nm/@extism/as-pdk" ]]; then
			echo "examples: skipping assemblyscript: npm packages assemblyscript and @extism/as-pdk not installed (run npm ci in examples/assemblyscript-filter, or .ci/deps.sh)" >&2
			missing=1
			continue
		fi
		tmp="$(mktemp -d)"
		cp examples/assemblyscript-filter/filter.ts "$tmp/"
		ln -s "$nm" "$tmp/node_modules"
		(cd "$tmp" && "$NODE" node_modules/assemblyscript/bin/asc.js filter.ts --use abort=filter/abort -O3 --noAssert -o "$d")
		rm -rf "$tmp"
		;;
	*)
		echo "examples: unknown language $lang" >&2
		exit 2
		;;
	esac
	echo "built $d"
done
((missing == 0)) || exit 3
