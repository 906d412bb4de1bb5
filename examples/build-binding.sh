#!/bin/sh
# Vets and unit-tests a Go binding example (examples/NAME, a module of its
# own) natively, then builds its plugin into NAME.wasm in its directory, or
# into OUT: `examples/build-binding.sh DIR [OUT]` (each binding example's
# build.sh runs it for its own directory). Standard Go only:
# GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared.
set -eu
if [ $# -lt 1 ] || [ ! -f "$1/go.mod" ]; then
	echo "usage: $0 DIR [OUT] (DIR: a binding example with its go.mod)" >&2
	exit 2
fi
dir=$(cd "$1" && pwd)
out=${2:-}
case $out in
"") out=$dir/$(basename "$dir").wasm ;;
/*) ;;
*) out=$(pwd)/$out ;;
esac
cd "$dir"
go vet ./...
go test ./...
GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out" .
echo "built $out"
