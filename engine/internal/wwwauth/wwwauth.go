// Package wwwauth finds parameters in WWW-Authenticate values (RFC 9110
// section 11.6.1), such as the resource_metadata of an MCP server's 401
// (RFC 9728): the HTTP binding reads it to discover the server's
// authorization metadata, and the relay rewrites it to point at its own.
//
// It scans a value the way both always did, not with a full challenge
// grammar: a parameter is its name at the start of the value or after a
// space, tab or comma, then '='. Names match without regard to ASCII case,
// and every offset is one into the value as given, whatever bytes it holds.
package wwwauth

import "strings"

// Param finds the auth-param name in v, one WWW-Authenticate value. It
// returns the span [start, end) of the first such parameter's value in v:
// a quoted-string with its quotes (an unterminated one runs to the end of
// v), else a token that ends at a comma, space or tab. ok is false when v
// has no parameter name.
func Param(v, name string) (start, end int, ok bool) {
	from := 0
	for {
		k := indexFold(v, name, from)
		if k < 0 || name == "" {
			return 0, 0, false
		}
		from = k + len(name)
		if k > 0 && !strings.ContainsRune(" \t,", rune(v[k-1])) {
			continue
		}
		j := skipBlanks(v, from)
		if j >= len(v) || v[j] != '=' {
			continue
		}
		start = skipBlanks(v, j+1)
		end = start
		if end < len(v) && v[end] == '"' {
			for end++; end < len(v) && v[end] != '"'; end++ {
				if v[end] == '\\' {
					end++
				}
			}
			end = min(end+1, len(v)) // past the closing quote
		} else {
			for end < len(v) && v[end] != ',' && v[end] != ' ' && v[end] != '\t' {
				end++
			}
		}
		return start, end, true
	}
}

// Value returns the value of the auth-param name in v (Param), a
// quoted-string unquoted; "" when v has none.
func Value(v, name string) string {
	start, end, ok := Param(v, name)
	if !ok {
		return ""
	}
	q := v[start:end]
	if q == "" || q[0] != '"' {
		return q
	}
	var out strings.Builder
	for j := 1; j < len(q) && q[j] != '"'; j++ {
		if q[j] == '\\' && j+1 < len(q) {
			j++
		}
		out.WriteByte(q[j])
	}
	return out.String()
}

// Replace returns v with the value of the auth-param name (Param) replaced
// by val as a quoted-string, every other byte kept; v itself when it has no
// such parameter. val is written as it is: it must hold no '"' or '\'.
func Replace(v, name, val string) string {
	start, end, ok := Param(v, name)
	if !ok {
		return v
	}
	return v[:start] + `"` + val + `"` + v[end:]
}

func skipBlanks(v string, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t') {
		i++
	}
	return i
}

// indexFold is the index of the first sub in s at or after from, bytes
// compared without regard to ASCII case; -1 if none.
func indexFold(s, sub string, from int) int {
	for i := from; i+len(sub) <= len(s); i++ {
		match := true
		for j := 0; j < len(sub); j++ {
			if lowerASCII(s[i+j]) != lowerASCII(sub[j]) {
				match = false
				break
			}
		}
		if match {
			return i
		}
	}
	return -1
}

func lowerASCII(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
