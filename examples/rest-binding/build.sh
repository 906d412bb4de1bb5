#!/bin/sh
# Vets and unit-tests the rest-binding example natively, then builds the
# plugin into rest-binding.wasm (or into the path given as the first
# argument), with ../build-binding.sh.
exec sh "$(dirname "$0")/../build-binding.sh" "$(dirname "$0")" "$@"
