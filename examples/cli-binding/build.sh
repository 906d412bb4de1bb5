#!/bin/sh
# Vets and unit-tests the cli-binding example natively, then builds the
# plugin into cli-binding.wasm (or into the path given as the first
# argument). Standard Go only: GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared.
set -eu
out=${1:-}
case $out in
"") out=$(cd "$(dirname "$0")" && pwd)/cli-binding.wasm ;;
/*) ;;
*) out=$(pwd)/$out ;;
esac
cd "$(dirname "$0")"
go vet ./...
go test ./...
GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags='-s -w -buildid=' -o "$out" .
echo "built $out"
