// Package redact is the logic of the first-party redact plugin: it finds
// secrets (cloud and API keys, tokens, private keys, passwords in connection
// strings) and personal data (emails, phone numbers, card numbers, IBANs)
// inside the JSON string values of MCP messages and masks them, or rejects the
// message, per rule.
//
// It is written for a standard-Go Wasm guest, where Go's regexp runs at under
// 1 MB/s: one pass over the message tracks JSON structure, looks for candidates
// with cheap byte tests only inside string values, and runs the expensive
// checks (Luhn, mod-97, base64url, custom regexps) only on candidate windows. A
// message with nothing to redact allocates nothing.
//
// Edits happen only inside string values, on ranges that never split a JSON
// escape; the top-level "id", "jsonrpc" and "method" members are never touched,
// and everything else is kept byte for byte.
//
// The Wasm entry point is ./cmd; Plugin returns the sdk.Plugin it registers.
package redact
