#!/bin/sh
# Builds every first-party plugin (plugins/<name>/cmd) into plugins/<name>/<name>.wasm,
# or into DIR/<name>.wasm with `plugins/build.sh DIR`. The flags make the build
# reproducible for a given Go version: no paths (-trimpath), no VCS stamp
# (-buildvcs=false), no build id (-buildid=), no symbol table (-s).
set -eu
cd "$(dirname "$0")/.."
out=${1:-}
for cmd in plugins/*/cmd; do
	name=$(basename "$(dirname "$cmd")")
	if [ -n "$out" ]; then dst=$out/$name.wasm; else dst=plugins/$name/$name.wasm; fi
	GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 GOWASM= GOFLAGS= \
		go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$dst" "./$cmd"
	echo "built $dst"
done
