// Package toolguard is the logic of the first-party toolguard plugin: tool
// policy, pinning against rug pulls, and poisoning signals, on either side
// of the tunnel.
//
//   - Policy: ordered allow/deny rules over tool names (patterns), callers
//     (client-key names or token subjects), tunnels and channels. A denied
//     tools/call is answered with a JSON-RPC error naming the rule, the same
//     whether the tool exists or not; denied tools are removed from
//     tools/list results (and from a tools array in initialize or
//     server/discover results).
//   - Pins: each listed tool's definition is hashed canonically (HashTool);
//     pins come from sets the operator commits (`sluice tools pin` writes
//     them) or are learned on first sight into the plugin's key/value store.
//     A tool whose definition no longer matches its pin is removed from
//     lists and its calls are blocked (in shadow mode, only logged) until it
//     is re-pinned; notifications/tools/list_changed makes every tool of its
//     tunnel and channel count as changed until it is listed again.
//   - Signals: hidden-instruction markers, injection phrases, invisible and
//     bidirectional Unicode, terminal escapes and URLs to hosts outside an
//     allow-list, looked for in every string of a tool definition and of a
//     tool result, each with its own action (record, mask, block).
//
// It is written for a standard-Go Wasm guest: it walks messages by byte
// offsets, edits only the strings it must, skips text with a byte-pair
// table, and keeps what spans calls in the store, not in globals.
//
// The Wasm entry point is ./cmd; Plugin returns the sdk.Plugin it registers.
package toolguard
