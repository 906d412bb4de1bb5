// Package rawjson reads and writes JSON as bytes, in place: it finds
// members and values by byte offsets, decodes only the strings asked for,
// and appends string literals, so a plugin can read a few members of a
// message or edit one value and keep every other byte as it was, without
// encoding/json (slow in a standard-Go Wasm guest: reflection on every
// call) and with little or no allocation.
//
// Every function that scans checks what it walks: a malformed document is
// ErrSyntax, never a panic, and nesting deeper than MaxDepth is ErrDepth. A
// function taking (b, i) reads the value that starts at b[i], after any
// white space. A repeated member name counts as JSON decoders in clients
// and servers read it: the last one wins, so a plugin cannot see one value
// while the client sees another. Names are compared after unescaping.
//
// Reading a member of a message:
//
//	res, err := rawjson.Member(m.Body, 0, "result")
//	if err != nil {
//		return sdk.Reject(0, -32603, "malformed message")
//	}
//	if res.Found() && m.Body[res.Start] == '{' {
//		// m.Body[res.Start:res.End] is the result object, byte for byte.
//	}
//
// Replacing a string value (v is its Span, holding a string literal):
//
//	out := append([]byte(nil), m.Body[:v.Start]...)
//	out = rawjson.AppendString(out, "[redacted]")
//	out = append(out, m.Body[v.End:]...)
//	return sdk.Replace(out)
package rawjson
