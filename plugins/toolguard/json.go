package toolguard

import (
	"encoding/binary"
	"errors"
	"unicode/utf16"
	"unicode/utf8"
)

// The JSON helpers work on byte offsets into the message, so that toolguard
// edits only the values it must and keeps everything else byte for byte.
// They validate what they walk (a malformed document is an error, never a
// panic) and bound nesting, since a guest's stack is not free.

// maxDepth bounds nesting in everything toolguard parses.
const maxDepth = 512

var (
	errSyntax = errors.New("malformed JSON")
	errDepth  = errors.New("JSON nested too deeply")
)

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// SWAR constants: a word of eight bytes is tested for a byte value at once.
const (
	lo8 = 0x0101010101010101
	hi8 = 0x8080808080808080
)

// special reports, per byte of x, whether it is '"', '\\' or a control
// character (the bytes that end a run of plain string contents).
func special(x uint64) uint64 {
	q := x ^ (lo8 * '"')
	bs := x ^ (lo8 * '\\')
	return ((q-lo8)&^q | (bs-lo8)&^bs | (x-lo8*0x20)&^x) & hi8
}

// stringEnd returns the index just past the string literal whose opening
// quote is b[i] and whether it holds escapes, checking escapes and
// rejecting raw control characters. Plain runs are skipped eight bytes at
// a time: this is most of what a standard-Go guest spends on a message.
func stringEnd(b []byte, i int) (int, bool, error) {
	esc := false
	j := i + 1
	for {
		for j+8 <= len(b) && special(binary.LittleEndian.Uint64(b[j:])) == 0 {
			j += 8
		}
		if j >= len(b) {
			return 0, false, errSyntax
		}
		c := b[j]
		switch {
		case c == '"':
			return j + 1, esc, nil
		case c == '\\':
			esc = true
			if j+1 >= len(b) {
				return 0, false, errSyntax
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+5 >= len(b) || hexVal(b[j+2])|hexVal(b[j+3])|hexVal(b[j+4])|hexVal(b[j+5]) < 0 {
					return 0, false, errSyntax
				}
				j += 6
			default:
				return 0, false, errSyntax
			}
		case c < 0x20:
			return 0, false, errSyntax
		default:
			j++
		}
	}
}

func hexVal(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1 << 8
}

// literalEnd returns the end of a number, true, false or null at b[i].
func literalEnd(b []byte, i int) (int, error) {
	for _, lit := range [...]string{"true", "false", "null"} {
		if len(b)-i >= len(lit) && string(b[i:i+len(lit)]) == lit {
			return i + len(lit), nil
		}
	}
	j := i
	if j < len(b) && b[j] == '-' {
		j++
	}
	d := j
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	if j == d || (b[d] == '0' && j-d > 1) {
		return 0, errSyntax
	}
	if j < len(b) && b[j] == '.' {
		j++
		f := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == f {
			return 0, errSyntax
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		x := j
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		if j == x {
			return 0, errSyntax
		}
	}
	return j, nil
}

// visitor receives what walk finds: each string value's raw contents
// (between the quotes, escapes undecoded) at [s, e), and whether they hold
// escapes. Object keys are not string values. A non-nil error stops the
// walk.
type visitor func(s, e int, esc bool) error

// walk validates the value at b[i] and returns its end, calling str for
// every string value in it (nil = none).
func walk(b []byte, i, depth int, str visitor) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		e, esc, err := stringEnd(b, i)
		if err != nil {
			return 0, err
		}
		if str != nil {
			if err := str(i+1, e-1, esc); err != nil {
				return 0, err
			}
		}
		return e, nil
	case '{':
		if depth >= maxDepth {
			return 0, errDepth
		}
		return members(b, i, func(_, _, vs int) (int, error) { return walk(b, vs, depth+1, str) })
	case '[':
		if depth >= maxDepth {
			return 0, errDepth
		}
		return elements(b, i, func(vs int) (int, error) { return walk(b, vs, depth+1, str) })
	}
	return literalEnd(b, i)
}

// members iterates the object whose '{' is b[i]. For each member it calls fn
// with the raw key contents [ks, ke) and the start of the value (after
// whitespace); fn returns the value's end. It returns the index just past
// the '}'.
func members(b []byte, i int, fn func(ks, ke, vs int) (int, error)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, errSyntax
		}
		ke, _, err := stringEnd(b, i)
		if err != nil {
			return 0, err
		}
		j := skipWS(b, ke)
		if j >= len(b) || b[j] != ':' {
			return 0, errSyntax
		}
		vs := skipWS(b, j+1)
		ve, err := fn(i+1, ke-1, vs)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == '}' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errSyntax
		}
		i = skipWS(b, i+1)
	}
}

// elements iterates the array whose '[' is b[i], calling fn with the start
// of each element (after whitespace); fn returns the element's end.
func elements(b []byte, i int, fn func(vs int) (int, error)) (int, error) {
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return 0, errSyntax
		}
		ve, err := fn(i)
		if err != nil {
			return 0, err
		}
		i = skipWS(b, ve)
		if i >= len(b) {
			return 0, errSyntax
		}
		if b[i] == ']' {
			return i + 1, nil
		}
		if b[i] != ',' {
			return 0, errSyntax
		}
		i = skipWS(b, i+1)
	}
}

// skipValue validates the value at b[i] and returns its end.
func skipValue(b []byte, i int) (int, error) { return walk(b, i, 0, nil) }

// span is a byte range [s, e) of a value.
type span struct{ s, e int }

func (p span) ok() bool { return p.e > p.s }

// lookup finds the values of the named members of the object at b[i] (the
// last occurrence of a repeated name wins, as in JavaScript and Go, so a
// duplicate key cannot show a filter one thing and the client another).
// Names are compared after unescaping. It returns the object's end.
func lookup(b []byte, i int, names []string, out []span) (int, error) {
	i = skipWS(b, i)
	if i >= len(b) || b[i] != '{' {
		return 0, errSyntax
	}
	var kb [64]byte
	return members(b, i, func(ks, ke, vs int) (int, error) {
		ve, err := skipValue(b, vs)
		if err != nil {
			return 0, err
		}
		k := unquote(kb[:0], b[ks:ke])
		for n, name := range names {
			if string(k) == name {
				out[n] = span{vs, ve}
			}
		}
		return ve, nil
	})
}

// visitMember calls fn on the value of each top-level member name of the
// object at b[0] (fn returns the value's end) and skips the others: one
// pass over the message.
func visitMember(b []byte, name string, fn func(vs int) (int, error)) error {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return errSyntax
	}
	var kb [64]byte
	end, err := members(b, i, func(ks, ke, vs int) (int, error) {
		if string(unquote(kb[:0], b[ks:ke])) == name {
			return fn(vs)
		}
		return skipValue(b, vs)
	})
	if err == nil && skipWS(b, end) != len(b) {
		err = errSyntax
	}
	return err
}

// member returns the value of one member of the object at b[i].
func member(b []byte, i int, name string) (span, error) {
	var out [1]span
	_, err := lookup(b, i, []string{name}, out[:])
	return out[0], err
}

// unquote appends the decoded contents of a JSON string (raw, between the
// quotes, already validated) to dst. Without escapes it returns raw itself
// when dst is empty (no copy). Lone surrogates become U+FFFD, as in every
// JSON decoder clients use.
func unquote(dst, raw []byte) []byte {
	k := 0
	for k < len(raw) && raw[k] != '\\' {
		k++
	}
	if k == len(raw) {
		if len(dst) == 0 {
			return raw
		}
		return append(dst, raw...)
	}
	dst = append(dst, raw[:k]...)
	for i := k; i < len(raw); {
		c := raw[i]
		if c != '\\' {
			dst = append(dst, c)
			i++
			continue
		}
		if i+1 >= len(raw) {
			break
		}
		switch raw[i+1] {
		case 'b':
			dst = append(dst, '\b')
		case 'f':
			dst = append(dst, '\f')
		case 'n':
			dst = append(dst, '\n')
		case 'r':
			dst = append(dst, '\r')
		case 't':
			dst = append(dst, '\t')
		case 'u':
			if i+5 >= len(raw) {
				return dst
			}
			r := rune(hex4(raw[i+2:]))
			i += 6
			if utf16.IsSurrogate(r) {
				r2 := rune(-1)
				if i+5 < len(raw) && raw[i] == '\\' && raw[i+1] == 'u' {
					r2 = rune(hex4(raw[i+2:]))
				}
				if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
					r = d
					i += 6
				} else {
					r = utf8.RuneError
				}
			}
			dst = utf8.AppendRune(dst, r)
			continue
		default: // '"', '\\', '/'
			dst = append(dst, raw[i+1])
		}
		i += 2
	}
	return dst
}

func hex4(b []byte) int {
	return hexVal(b[0])<<12 | hexVal(b[1])<<8 | hexVal(b[2])<<4 | hexVal(b[3])
}

// appendQuoted appends s as a JSON string literal: only '"', '\\' and
// control characters are escaped (the canonical form of RFC 8785); invalid
// UTF-8 becomes U+FFFD.
func appendQuoted(dst, s []byte) []byte {
	const hex = "0123456789abcdef"
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				dst = append(dst, '\\', c)
			case c == '\b':
				dst = append(dst, '\\', 'b')
			case c == '\f':
				dst = append(dst, '\\', 'f')
			case c == '\n':
				dst = append(dst, '\\', 'n')
			case c == '\r':
				dst = append(dst, '\\', 'r')
			case c == '\t':
				dst = append(dst, '\\', 't')
			case c < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				dst = append(dst, c)
			}
			i++
			continue
		}
		r, n := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && n == 1 {
			dst = append(dst, "\ufffd"...)
		} else {
			dst = append(dst, s[i:i+n]...)
		}
		i += n
	}
	return append(dst, '"')
}

// edit replaces b[s:e] with repl.
type edit struct {
	s, e int
	repl []byte
}

// applyEdits returns b with edits (sorted, not overlapping) applied.
func applyEdits(b []byte, edits []edit) []byte {
	n := len(b)
	for _, ed := range edits {
		n += len(ed.repl) - (ed.e - ed.s)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, ed := range edits {
		out = append(out, b[at:ed.s]...)
		out = append(out, ed.repl...)
		at = ed.e
	}
	return append(out, b[at:]...)
}
