// Package host is the Wasm plugin host: it loads a plugin module, checks it
// against one of two guest ABIs, and serves it as an engine.Stage.
//
//   - The native ABI (sdk/ABI.md) runs on wazero: the host writes the
//     envelope straight into guest memory and decodes the answer in place.
//   - The Extism ABI runs on the same wazero runtime with the host's own
//     implementation of the Extism kernel, so any Extism PDK plugin loads
//     unchanged; envelope and answer are JSON.
//
// A Runtime owns the shared compilation cache and the per-plugin key/value
// stores; Runtime.Load compiles one module once and returns a Stage with a
// bounded pool of instances. Each guest call checks one instance out for the
// length of the call (see RATIONALE.md). Every call runs under a deadline, a memory-page limit
// and a message-size limit; an instance that trapped, timed out or ran out of
// memory is discarded, never reused.
package host
