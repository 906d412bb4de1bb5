package rawjson

import (
	"encoding/binary"
	"errors"
	"math/bits"
)

// MaxDepth bounds the nesting of arrays and objects in what Skip and Walk
// read (and so Lookup and Member): a document nested deeper is ErrDepth.
// The scanner recurses, and a guest's stack is not free.
const MaxDepth = 512

var (
	// ErrSyntax is a malformed (or truncated) JSON document.
	ErrSyntax = errors.New("malformed JSON")
	// ErrDepth is a document nested more than MaxDepth levels deep.
	ErrDepth = errors.New("JSON nested too deeply")
)

// SkipSpace returns the index of the first byte at or after i that is not
// JSON white space (len(b) when there is none; i itself when it is out of
// range).
func SkipSpace(b []byte, i int) int {
	for uint(i) < uint(len(b)) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
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

// StringEnd returns the index just past the string literal whose opening
// quote is b[i], and whether it holds escapes. It checks every escape and
// refuses raw control characters (ErrSyntax). Plain runs are skipped eight
// bytes at a time: in a standard-Go guest this is most of what reading a
// message costs.
func StringEnd(b []byte, i int) (end int, escaped bool, err error) {
	if i < 0 || i >= len(b) || b[i] != '"' {
		return 0, false, ErrSyntax
	}
	j := i + 1
	for {
		for j+8 <= len(b) {
			if m := special(binary.LittleEndian.Uint64(b[j:])); m != 0 {
				// The lowest flagged byte is exact (a borrow only flags
				// bytes after it): go straight to it.
				j += bits.TrailingZeros64(m) >> 3
				break
			}
			j += 8
		}
		if j >= len(b) {
			return 0, false, ErrSyntax
		}
		c := b[j]
		switch {
		case c == '"':
			return j + 1, escaped, nil
		case c == '\\':
			escaped = true
			if j+1 >= len(b) {
				return 0, false, ErrSyntax
			}
			switch b[j+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				j += 2
			case 'u':
				if j+5 >= len(b) || hexVal(b[j+2])|hexVal(b[j+3])|hexVal(b[j+4])|hexVal(b[j+5]) < 0 {
					return 0, false, ErrSyntax
				}
				j += 6
			default:
				return 0, false, ErrSyntax
			}
		case c < 0x20:
			return 0, false, ErrSyntax
		default:
			j++
		}
	}
}

// hexVal is the value of a hex digit, or a negative number.
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

// digitsEnd returns the end of the run of decimal digits at b[j].
func digitsEnd(b []byte, j int) int {
	for j < len(b) && b[j] >= '0' && b[j] <= '9' {
		j++
	}
	return j
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
	j = digitsEnd(b, j)
	if j == d || (b[d] == '0' && j-d > 1) {
		return 0, ErrSyntax
	}
	if j < len(b) && b[j] == '.' {
		f := j + 1
		if j = digitsEnd(b, f); j == f {
			return 0, ErrSyntax
		}
	}
	if j < len(b) && (b[j] == 'e' || b[j] == 'E') {
		j++
		if j < len(b) && (b[j] == '+' || b[j] == '-') {
			j++
		}
		x := j
		if j = digitsEnd(b, x); j == x {
			return 0, ErrSyntax
		}
	}
	return j, nil
}

// Skip checks the value at b[i] and returns the index just past it.
func Skip(b []byte, i int) (int, error) { return walk(b, i, 0, nil) }

// Walk is Skip that also calls visit (nil = none) with the raw contents
// b[s:e] of every string value in the value at b[i] (between the quotes,
// escapes not decoded: see AppendUnquoted), and whether they hold escapes.
// Member names are not string values. An error from visit stops the walk
// and is returned.
func Walk(b []byte, i int, visit func(s, e int, escaped bool) error) (int, error) {
	return walk(b, i, 0, visit)
}

func walk(b []byte, i, depth int, visit func(s, e int, escaped bool) error) (int, error) {
	i = SkipSpace(b, i)
	if i < 0 || i >= len(b) {
		return 0, ErrSyntax
	}
	switch b[i] {
	case '"':
		e, esc, err := StringEnd(b, i)
		if err != nil {
			return 0, err
		}
		if visit != nil {
			if err := visit(i+1, e-1, esc); err != nil {
				return 0, err
			}
		}
		return e, nil
	case '{':
		if depth >= MaxDepth {
			return 0, ErrDepth
		}
		return members(b, i, func(_, _, vs int) (int, error) { return walk(b, vs, depth+1, visit) })
	case '[':
		if depth >= MaxDepth {
			return 0, ErrDepth
		}
		return elements(b, i, func(vs int) (int, error) { return walk(b, vs, depth+1, visit) })
	}
	return literalEnd(b, i)
}

// Members iterates the object at b[i]. For each member it calls fn with
// the raw contents b[ks:ke] of its name (between the quotes, escapes not
// decoded) and the start vs of its value (after white space); fn returns
// the value's end (Skip(b, vs) when it does not read the value itself), or
// an error, which stops the iteration and is returned. Members returns the
// index just past the closing '}'.
func Members(b []byte, i int, fn func(ks, ke, vs int) (int, error)) (int, error) {
	i = SkipSpace(b, i)
	if i < 0 || i >= len(b) || b[i] != '{' {
		return 0, ErrSyntax
	}
	return members(b, i, fn)
}

// members is Members for b[i] == '{'.
func members(b []byte, i int, fn func(ks, ke, vs int) (int, error)) (int, error) {
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == '}' {
		return i + 1, nil
	}
	for {
		if i >= len(b) || b[i] != '"' {
			return 0, ErrSyntax
		}
		ke, _, err := StringEnd(b, i)
		if err != nil {
			return 0, err
		}
		j := SkipSpace(b, ke)
		if j >= len(b) || b[j] != ':' {
			return 0, ErrSyntax
		}
		vs := SkipSpace(b, j+1)
		ve, err := fn(i+1, ke-1, vs)
		if err != nil {
			return 0, err
		}
		if ve <= vs { // no progress: a broken fn must not loop forever
			return 0, ErrSyntax
		}
		var done bool
		if i, done, err = afterValue(b, ve, '}'); err != nil || done {
			return i, err
		}
	}
}

// afterValue reads what follows a value of an object or array that ends at
// ve: past the closing byte end (done), or to the next value after ','.
func afterValue(b []byte, ve int, end byte) (i int, done bool, err error) {
	i = SkipSpace(b, ve)
	switch {
	case i >= len(b):
		return 0, false, ErrSyntax
	case b[i] == end:
		return i + 1, true, nil
	case b[i] != ',':
		return 0, false, ErrSyntax
	}
	return SkipSpace(b, i+1), false, nil
}

// Elements iterates the array at b[i], calling fn with the start of each
// element (after white space); fn returns the element's end, or an error,
// which stops the iteration and is returned. Elements returns the index
// just past the closing ']'.
func Elements(b []byte, i int, fn func(vs int) (int, error)) (int, error) {
	i = SkipSpace(b, i)
	if i < 0 || i >= len(b) || b[i] != '[' {
		return 0, ErrSyntax
	}
	return elements(b, i, fn)
}

// elements is Elements for b[i] == '['.
func elements(b []byte, i int, fn func(vs int) (int, error)) (int, error) {
	i = SkipSpace(b, i+1)
	if i < len(b) && b[i] == ']' {
		return i + 1, nil
	}
	for {
		if i >= len(b) {
			return 0, ErrSyntax
		}
		ve, err := fn(i)
		if err != nil {
			return 0, err
		}
		if ve <= i {
			return 0, ErrSyntax
		}
		var done bool
		if i, done, err = afterValue(b, ve, ']'); err != nil || done {
			return i, err
		}
	}
}
