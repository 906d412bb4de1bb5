// Package wasmtest runs a built plugin module (.wasm) through the real Sluice
// host (package host, wazero), so a plugin's ABI glue is tested end to end. It
// is separate from sdktest because package sdk must never depend on the host.
package wasmtest
