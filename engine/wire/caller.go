package wire

import "unicode/utf8"

// Sluice's caller extension (docs/wire.md, engine/relay/RATIONALE.md): the
// relay tells the agent who is calling, so agent-side plugins see
// engine.Message.Caller as relay-side ones do.
//
// Both sides must say so. The relay advertises ExtCaller in
// HeaderExtensions on its agent-API answers; an agent that has seen the
// advertisement offers it back with HeaderExtensions: caller on its polls.
// The relay sets a command's "caller" field only in the answer to a poll
// that carried the offer, and an agent reads the field only from the answer
// to a poll on which it offered the extension and that itself advertises it:
// a claim from any other relay (OpenAI's hosted service, a relay that does
// not know the extension, something in between) is dropped unread.
//
// The field is a command field, never a header: bindings see only
// command.headers, so the caller never reaches the MCP server.
const (
	// ExtCaller names the caller extension.
	ExtCaller = "caller"
	// MaxCallerBytes bounds a caller's name on the wire.
	MaxCallerBytes = 256
)

// ValidCaller reports whether c can travel as a command's caller: 1 to
// MaxCallerBytes bytes of UTF-8 with no control character. The relay
// carries only callers that pass; an agent drops any other claim.
func ValidCaller(c string) bool {
	if c == "" || len(c) > MaxCallerBytes || !utf8.ValidString(c) {
		return false
	}
	for _, r := range c {
		if r < 0x20 || r == 0x7f || (r >= 0x80 && r < 0xa0) || r == utf8.RuneError {
			return false
		}
	}
	return true
}
