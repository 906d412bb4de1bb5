package logs

import "unicode/utf8"

// MaxField is the most bytes of a client-chosen value (a tool name, a
// session id) that a log or audit record carries: a request may be megabytes,
// its record should not be.
const MaxField = 256

// Clip returns s cut to at most n bytes on a UTF-8 boundary, followed by "…"
// when it was cut.
func Clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}
