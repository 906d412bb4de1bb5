package toolguard

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"slices"
	"strconv"
	"unicode/utf16"

	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// HashedMembers are the members of a tool definition a pin covers, in
// canonical (sorted) order. Everything else a server sends with a tool
// (_meta, icons, execution hints) may change without re-pinning.
var HashedMembers = []string{"annotations", "description", "inputSchema", "name", "outputSchema", "title"}

// HashPrefix starts every pin.
const HashPrefix = "sha256:"

// HashTool returns the pin of one tool definition (a JSON object, as a
// tools/list result lists it): "sha256:" and the hex SHA-256 of the
// canonical JSON (RFC 8785: members sorted by UTF-16 code units, no
// insignificant whitespace, strings minimally escaped, numbers in their
// shortest round-trip form) of an object holding only its HashedMembers.
// Two servers that send the same definition with different key order,
// whitespace or escapes get the same pin.
func HashTool(def []byte) (string, error) {
	var sum [32]byte
	if err := hashTool(def, 0, nil, &sum); err != nil {
		return "", err
	}
	return HashPrefix + hex.EncodeToString(sum[:]), nil
}

// hashTool hashes the tool object at def[i] into sum, using buf as scratch.
func hashTool(def []byte, i int, buf []byte, sum *[32]byte) error {
	var vals [6]rawjson.Span
	if _, err := rawjson.Lookup(def, i, HashedMembers, vals[:]); err != nil {
		return err
	}
	if !vals[3].Found() || def[vals[3].Start] != '"' {
		return errors.New("tool definition without a string name")
	}
	out := append(buf[:0], '{')
	for n, name := range HashedMembers {
		if !vals[n].Found() {
			continue
		}
		if len(out) > 1 {
			out = append(out, ',')
		}
		out = append(out, '"')
		out = append(out, name...)
		out = append(out, '"', ':')
		var err error
		if out, _, err = appendCanon(out, def, vals[n].Start, 0); err != nil {
			return err
		}
	}
	out = append(out, '}')
	*sum = sha256.Sum256(out)
	return nil
}

// appendCanon appends the canonical form of the value at b[i] and returns
// its end.
func appendCanon(dst, b []byte, i, depth int) ([]byte, int, error) {
	i = rawjson.SkipSpace(b, i)
	if i >= len(b) {
		return dst, 0, rawjson.ErrSyntax
	}
	switch b[i] {
	case '"':
		e, _, err := rawjson.StringEnd(b, i)
		if err != nil {
			return dst, 0, err
		}
		var tmp [128]byte
		return rawjson.AppendStringBytes(dst, rawjson.AppendUnquoted(tmp[:0], b[i+1:e-1])), e, nil
	case '{':
		if depth >= rawjson.MaxDepth {
			return dst, 0, rawjson.ErrDepth
		}
		type kv struct {
			key  []byte
			s, e int
		}
		var ms []kv
		end, err := rawjson.Members(b, i, func(ks, ke, vs int) (int, error) {
			ve, err := rawjson.Skip(b, vs)
			if err != nil {
				return 0, err
			}
			k := rawjson.AppendUnquoted(nil, b[ks:ke])
			for n := range ms {
				if string(ms[n].key) == string(k) { // the last one wins
					ms[n].s, ms[n].e = vs, ve
					return ve, nil
				}
			}
			ms = append(ms, kv{key: k, s: vs, e: ve})
			return ve, nil
		})
		if err != nil {
			return dst, 0, err
		}
		slices.SortFunc(ms, func(a, b kv) int { return compareUTF16(a.key, b.key) })
		dst = append(dst, '{')
		for n, m := range ms {
			if n > 0 {
				dst = append(dst, ',')
			}
			dst = rawjson.AppendStringBytes(dst, m.key)
			dst = append(dst, ':')
			if dst, _, err = appendCanon(dst, b, m.s, depth+1); err != nil {
				return dst, 0, err
			}
		}
		return append(dst, '}'), end, nil
	case '[':
		if depth >= rawjson.MaxDepth {
			return dst, 0, rawjson.ErrDepth
		}
		dst = append(dst, '[')
		first := true
		end, err := rawjson.Elements(b, i, func(vs int) (int, error) {
			if !first {
				dst = append(dst, ',')
			}
			first = false
			var e int
			var err error
			dst, e, err = appendCanon(dst, b, vs, depth+1)
			return e, err
		})
		if err != nil {
			return dst, 0, err
		}
		return append(dst, ']'), end, nil
	}
	e, err := rawjson.Skip(b, i)
	if err != nil {
		return dst, 0, err
	}
	if c := b[i]; c == 't' || c == 'f' || c == 'n' {
		return append(dst, b[i:e]...), e, nil
	}
	f, err := strconv.ParseFloat(string(b[i:e]), 64)
	if err != nil || math.IsInf(f, 0) {
		return dst, 0, errors.New("number out of range")
	}
	return appendNumber(dst, f), e, nil
}

// appendNumber writes f as ECMAScript's Number.prototype.toString does
// (RFC 8785, section 3.2.2.3).
func appendNumber(dst []byte, f float64) []byte {
	if f == 0 {
		return append(dst, '0')
	}
	if f < 0 {
		dst = append(dst, '-')
		f = -f
	}
	// Shortest round-trip digits and the decimal exponent: d.ddde±x.
	var tmp [32]byte
	e := strconv.AppendFloat(tmp[:0], f, 'e', -1, 64)
	mant, exp := e, 0
	for k := range e {
		if e[k] == 'e' {
			mant = e[:k]
			x, _ := strconv.Atoi(string(e[k+1:]))
			exp = x
			break
		}
	}
	var digits []byte
	for _, c := range mant {
		if c != '.' {
			digits = append(digits, c)
		}
	}
	k, n := len(digits), exp+1 // f = 0.digits × 10^n
	switch {
	case k <= n && n <= 21:
		dst = append(dst, digits...)
		for range n - k {
			dst = append(dst, '0')
		}
	case 0 < n && n <= 21:
		dst = append(dst, digits[:n]...)
		dst = append(dst, '.')
		dst = append(dst, digits[n:]...)
	case -6 < n && n <= 0:
		dst = append(dst, '0', '.')
		for range -n {
			dst = append(dst, '0')
		}
		dst = append(dst, digits...)
	default:
		dst = append(dst, digits[0])
		if k > 1 {
			dst = append(dst, '.')
			dst = append(dst, digits[1:]...)
		}
		dst = append(dst, 'e')
		if n-1 >= 0 {
			dst = append(dst, '+')
		}
		dst = strconv.AppendInt(dst, int64(n-1), 10)
	}
	return dst
}

// compareUTF16 orders two UTF-8 strings by their UTF-16 code units, as RFC
// 8785 sorts member names. It differs from byte order only between
// characters above U+FFFF and those in U+E000..U+FFFF.
func compareUTF16(a, b []byte) int {
	ra, rb := []rune(string(a)), []rune(string(b))
	for i := 0; i < len(ra) && i < len(rb); i++ {
		if ra[i] == rb[i] {
			continue
		}
		ua, ub := unit(ra[i]), unit(rb[i])
		if ua == ub { // one high surrogate: code point order is unit order
			ua, ub = ra[i], rb[i]
		}
		if ua < ub {
			return -1
		}
		return 1
	}
	return len(ra) - len(rb)
}

// unit is the first UTF-16 code unit of r.
func unit(r rune) rune {
	if r >= 0x10000 {
		h, _ := utf16.EncodeRune(r)
		return h
	}
	return r
}
