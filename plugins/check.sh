#!/bin/sh
# Rebuilds every first-party plugin into a temporary directory and fails if a
# committed plugins/<name>/<name>.wasm differs from its source (CI runs this).
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
plugins/build.sh "$tmp" >/dev/null
status=0
for built in "$tmp"/*.wasm; do
	name=$(basename "$built" .wasm)
	if ! cmp -s "$built" "plugins/$name/$name.wasm"; then
		echo "plugins/$name/$name.wasm differs from its source: run plugins/build.sh ($(go version)) and commit" >&2
		status=1
	fi
done
[ $status -eq 0 ] && echo "plugins: committed modules match their source"
exit $status
