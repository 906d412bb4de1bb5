// Package headers is the logic of the first-party headers plugin: it adds,
// sets, removes and renames request and response headers by rule.
//
// Secret values are never literals in config: the operator writes `env:NAME` or
// `file:/path`, and the host resolves those references before it hands the
// plugin its config (a Wasm guest has no environment). A value that still
// starts with "env:" or "file:" is refused, so an unresolved reference is never
// sent as a header.
//
// The Wasm entry point is ./cmd; Plugin returns the sdk.Plugin it registers.
package headers
