// Package stdio is the stdio binding: it supervises one MCP server child
// process (argv, no shell), speaks newline-delimited JSON-RPC on its stdin and
// stdout, multiplexes concurrent requests by rewriting their ids (and progress
// tokens) to unique per-binding values and restoring the original bytes on the
// way back, routes progress notifications to the request that caused them,
// and restarts the child with backoff when it dies.
//
//	Do(req id "a") ─▶ id 17 ─▶ child stdin
//	emit(id "a")   ◀─ id 17 ◀─ child stdout (notifications by progressToken)
package stdio
