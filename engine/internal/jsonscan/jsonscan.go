// Package jsonscan is a small in-place JSON scanner for the tunnel's hot
// paths: it validates as it walks and hands out sub-slices of the input, so a
// JSON-RPC payload can be carried raw without a second pass. Anything unusual
// (escaped object keys) is reported as ErrFallback so callers can defer to
// encoding/json, which the callers' differential fuzz tests hold it to.
package jsonscan

import (
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// ErrFallback asks the caller to decode with encoding/json instead.
var ErrFallback = errors.New("jsonscan: fallback")

// ErrSyntax is returned for input that is not valid JSON.
var ErrSyntax = errors.New("jsonscan: invalid JSON")

// Scanner walks a JSON document in place. B is the input, I the position.
type Scanner struct {
	B []byte
	I int
}

// WS skips whitespace.
func (s *Scanner) WS() {
	for s.I < len(s.B) {
		switch s.B[s.I] {
		case ' ', '\t', '\n', '\r':
			s.I++
		default:
			return
		}
	}
}

// Peek skips whitespace and returns the next byte (0 at the end).
func (s *Scanner) Peek() byte {
	s.WS()
	if s.I < len(s.B) {
		return s.B[s.I]
	}
	return 0
}

// Expect consumes the byte c after whitespace.
func (s *Scanner) Expect(c byte) error {
	if s.Peek() != c {
		return ErrSyntax
	}
	s.I++
	return nil
}

// SkipString advances over a JSON string starting at s.I (at the quote) and
// reports whether it held escapes.
func (s *Scanner) SkipString() (escaped bool, err error) {
	if s.I >= len(s.B) || s.B[s.I] != '"' {
		return false, ErrSyntax
	}
	s.I++
	for s.I < len(s.B) {
		// The common case: a run of plain ASCII.
		i, b := s.I, s.B
		for i < len(b) && plain[b[i]] {
			i++
		}
		s.I = i
		if i >= len(b) {
			break
		}
		c := b[i]
		switch {
		case c == '"':
			s.I++
			return escaped, nil
		case c == '\\':
			escaped = true
			if s.I+1 >= len(s.B) {
				return false, ErrSyntax
			}
			switch s.B[s.I+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.I += 2
			case 'u':
				if s.I+6 > len(s.B) {
					return false, ErrSyntax
				}
				for _, h := range s.B[s.I+2 : s.I+6] {
					if !isHex(h) {
						return false, ErrSyntax
					}
				}
				s.I += 6
			default:
				return false, ErrSyntax
			}
		case c < 0x20:
			return false, ErrSyntax
		case c < utf8.RuneSelf:
			s.I++
		default:
			r, n := utf8.DecodeRune(s.B[s.I:])
			if r == utf8.RuneError && n == 1 {
				// encoding/json replaces invalid UTF-8; we keep the bytes but
				// must not accept what it would decode differently in keys.
				escaped = true
			}
			s.I += n
		}
	}
	return false, ErrSyntax
}

// plain marks the bytes a string may hold without a closer look.
var plain = func() (t [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		t[c] = c != '"' && c != '\\'
	}
	return t
}()

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// Str reads a JSON string value.
func (s *Scanner) Str() (string, error) {
	s.WS()
	start := s.I
	esc, err := s.SkipString()
	if err != nil {
		return "", err
	}
	if !esc {
		return string(s.B[start+1 : s.I-1]), nil
	}
	var v string
	if err := json.Unmarshal(s.B[start:s.I], &v); err != nil {
		return "", err
	}
	return v, nil
}

// Value skips any JSON value and returns its bytes.
func (s *Scanner) Value(depth int) ([]byte, error) {
	if depth > 10000 {
		return nil, ErrSyntax
	}
	s.WS()
	start := s.I
	if s.I >= len(s.B) {
		return nil, ErrSyntax
	}
	switch c := s.B[s.I]; {
	case c == '"':
		if _, err := s.SkipString(); err != nil {
			return nil, err
		}
	case c == '{':
		s.I++
		if s.Peek() == '}' {
			s.I++
			break
		}
		for {
			s.WS()
			if _, err := s.SkipString(); err != nil {
				return nil, err
			}
			if err := s.Expect(':'); err != nil {
				return nil, err
			}
			if _, err := s.Value(depth + 1); err != nil {
				return nil, err
			}
			c := s.Peek()
			s.I++
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, ErrSyntax
			}
		}
	case c == '[':
		s.I++
		if s.Peek() == ']' {
			s.I++
			break
		}
		for {
			if _, err := s.Value(depth + 1); err != nil {
				return nil, err
			}
			c := s.Peek()
			s.I++
			if c == ']' {
				break
			}
			if c != ',' {
				return nil, ErrSyntax
			}
		}
	case c == 't':
		return s.Lit(start, "true")
	case c == 'f':
		return s.Lit(start, "false")
	case c == 'n':
		return s.Lit(start, "null")
	default:
		if err := s.Number(); err != nil {
			return nil, err
		}
	}
	return s.B[start:s.I], nil
}

// Lit consumes the literal w (true, false, null) that starts at s.I.
func (s *Scanner) Lit(start int, w string) ([]byte, error) {
	if len(s.B)-s.I < len(w) || string(s.B[s.I:s.I+len(w)]) != w {
		return nil, ErrSyntax
	}
	s.I += len(w)
	return s.B[start:s.I], nil
}

// Number consumes a JSON number.
func (s *Scanner) Number() error {
	b, i := s.B, s.I
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return ErrSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return ErrSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return ErrSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.I = i
	return nil
}

// Object calls f for each member of an object; f must consume the value.
// Keys with escapes return ErrFallback: decode such documents with
// encoding/json instead.
func (s *Scanner) Object(f func(key []byte) error) error {
	if err := s.Expect('{'); err != nil {
		return err
	}
	if s.Peek() == '}' {
		s.I++
		return nil
	}
	for {
		s.WS()
		start := s.I
		esc, err := s.SkipString()
		if err != nil {
			return err
		}
		if esc {
			return ErrFallback
		}
		key := s.B[start+1 : s.I-1]
		if err := s.Expect(':'); err != nil {
			return err
		}
		if err := f(key); err != nil {
			return err
		}
		c := s.Peek()
		s.I++
		if c == '}' {
			return nil
		}
		if c != ',' {
			return ErrSyntax
		}
	}
}

// Array calls f for each element of an array; f must consume the element
// (it starts after any whitespace).
func (s *Scanner) Array(f func() error) error {
	if err := s.Expect('['); err != nil {
		return err
	}
	if s.Peek() == ']' {
		s.I++
		return nil
	}
	for {
		s.WS()
		if err := f(); err != nil {
			return err
		}
		c := s.Peek()
		s.I++
		if c == ']' {
			return nil
		}
		if c != ',' {
			return ErrSyntax
		}
	}
}

// End checks that only whitespace is left.
func (s *Scanner) End() error {
	s.WS()
	if s.I != len(s.B) {
		return ErrSyntax
	}
	return nil
}
