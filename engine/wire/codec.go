package wire

import (
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// This file holds the hand-written codec for the hot wire messages (poll
// bodies and response posts). encoding/json validates a document and then
// decodes it in a second pass, and re-validates and compacts every
// json.RawMessage it encodes; on the tunnel's hot path that was a tenth of
// the CPU. The codec below makes one pass, keeps JSON-RPC payloads as
// sub-slices of one private copy of the input, and falls back to
// encoding/json only for rare forms (escaped object keys, unusual strings).
// FuzzCodecMatchesEncodingJSON holds it to encoding/json's answers.

var errSyntax = errors.New("wire: invalid JSON")

type scanner struct {
	b []byte
	i int
}

func (s *scanner) ws() {
	for s.i < len(s.b) {
		switch s.b[s.i] {
		case ' ', '\t', '\n', '\r':
			s.i++
		default:
			return
		}
	}
}

func (s *scanner) peek() byte {
	s.ws()
	if s.i < len(s.b) {
		return s.b[s.i]
	}
	return 0
}

func (s *scanner) expect(c byte) error {
	if s.peek() != c {
		return errSyntax
	}
	s.i++
	return nil
}

// skipString advances over a JSON string starting at s.i (at the quote) and
// reports whether it held escapes.
func (s *scanner) skipString() (escaped bool, err error) {
	if s.i >= len(s.b) || s.b[s.i] != '"' {
		return false, errSyntax
	}
	s.i++
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			return escaped, nil
		case c == '\\':
			escaped = true
			if s.i+1 >= len(s.b) {
				return false, errSyntax
			}
			switch s.b[s.i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				s.i += 2
			case 'u':
				if s.i+6 > len(s.b) {
					return false, errSyntax
				}
				for _, h := range s.b[s.i+2 : s.i+6] {
					if !isHex(h) {
						return false, errSyntax
					}
				}
				s.i += 6
			default:
				return false, errSyntax
			}
		case c < 0x20:
			return false, errSyntax
		case c < utf8.RuneSelf:
			s.i++
		default:
			r, n := utf8.DecodeRune(s.b[s.i:])
			if r == utf8.RuneError && n == 1 {
				// encoding/json replaces invalid UTF-8; we keep the bytes but
				// must not accept what it would decode differently in keys.
				escaped = true
			}
			s.i += n
		}
	}
	return false, errSyntax
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// str reads a JSON string value.
func (s *scanner) str() (string, error) {
	s.ws()
	start := s.i
	esc, err := s.skipString()
	if err != nil {
		return "", err
	}
	if !esc {
		return string(s.b[start+1 : s.i-1]), nil
	}
	var v string
	if err := json.Unmarshal(s.b[start:s.i], &v); err != nil {
		return "", err
	}
	return v, nil
}

// value skips any JSON value and returns its bytes.
func (s *scanner) value(depth int) ([]byte, error) {
	if depth > 10000 {
		return nil, errSyntax
	}
	s.ws()
	start := s.i
	if s.i >= len(s.b) {
		return nil, errSyntax
	}
	switch c := s.b[s.i]; {
	case c == '"':
		if _, err := s.skipString(); err != nil {
			return nil, err
		}
	case c == '{':
		s.i++
		if s.peek() == '}' {
			s.i++
			break
		}
		for {
			s.ws()
			if _, err := s.skipString(); err != nil {
				return nil, err
			}
			if err := s.expect(':'); err != nil {
				return nil, err
			}
			if _, err := s.value(depth + 1); err != nil {
				return nil, err
			}
			c := s.peek()
			s.i++
			if c == '}' {
				break
			}
			if c != ',' {
				return nil, errSyntax
			}
		}
	case c == '[':
		s.i++
		if s.peek() == ']' {
			s.i++
			break
		}
		for {
			if _, err := s.value(depth + 1); err != nil {
				return nil, err
			}
			c := s.peek()
			s.i++
			if c == ']' {
				break
			}
			if c != ',' {
				return nil, errSyntax
			}
		}
	case c == 't':
		return s.lit(start, "true")
	case c == 'f':
		return s.lit(start, "false")
	case c == 'n':
		return s.lit(start, "null")
	default:
		if err := s.number(); err != nil {
			return nil, err
		}
	}
	return s.b[start:s.i], nil
}

func (s *scanner) lit(start int, w string) ([]byte, error) {
	if len(s.b)-s.i < len(w) || string(s.b[s.i:s.i+len(w)]) != w {
		return nil, errSyntax
	}
	s.i += len(w)
	return s.b[start:s.i], nil
}

func (s *scanner) number() error {
	b, i := s.b, s.i
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
		return errSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errSyntax
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
			return errSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	s.i = i
	return nil
}

// object calls f for each member of an object; f must consume the value.
// Keys with escapes fall back to errFallback.
func (s *scanner) object(f func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.peek() == '}' {
		s.i++
		return nil
	}
	for {
		s.ws()
		start := s.i
		esc, err := s.skipString()
		if err != nil {
			return err
		}
		if esc {
			return errFallback
		}
		key := s.b[start+1 : s.i-1]
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := f(key); err != nil {
			return err
		}
		c := s.peek()
		s.i++
		if c == '}' {
			return nil
		}
		if c != ',' {
			return errSyntax
		}
	}
}

// errFallback asks the caller to decode with encoding/json instead.
var errFallback = errors.New("wire: fallback")

// setString reads a string into *dst; null leaves *dst as it was (as
// encoding/json does); any other type is an error.
func (s *scanner) setString(dst *string) error {
	if s.peek() == 'n' {
		_, err := s.lit(s.i, "null")
		return err
	}
	v, err := s.str()
	if err == nil {
		*dst = v
	}
	return err
}

// headers reads {"name":["v",…],…} into h (null = nil), merging into an
// existing map as encoding/json does.
func (s *scanner) headers(h map[string][]string) (map[string][]string, error) {
	if s.peek() == 'n' {
		_, err := s.lit(s.i, "null")
		return nil, err
	}
	if h == nil {
		h = map[string][]string{}
	}
	err := s.object(func(key []byte) error {
		if s.peek() == 'n' {
			_, err := s.lit(s.i, "null")
			h[string(key)] = nil
			return err
		}
		if err := s.expect('['); err != nil {
			return err
		}
		var vs []string
		if s.peek() == ']' {
			s.i++
			h[string(key)] = []string{}
			return nil
		}
		for {
			var v string
			if err := s.setString(&v); err != nil {
				return err
			}
			vs = append(vs, v)
			c := s.peek()
			s.i++
			if c == ']' {
				break
			}
			if c != ',' {
				return errSyntax
			}
		}
		h[string(key)] = vs
		return nil
	})
	return h, err
}

func (s *scanner) end() error {
	s.ws()
	if s.i != len(s.b) {
		return errSyntax
	}
	return nil
}

// decodeCommand reads one command object. Duplicate keys: the last wins, as
// in encoding/json.
func (s *scanner) command(c *Command) error {
	return s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "request_id":
			err = s.setString(&c.RequestID)
		case "shard_token":
			err = s.setString(&c.ShardToken)
		case "command_type":
			err = s.setString(&c.CommandType)
		case "channel":
			err = s.setString(&c.Channel)
		case "created_at":
			err = s.setString(&c.CreatedAt)
		case "headers":
			c.Headers, err = s.headers(c.Headers)
		case "response_timeout":
			if s.peek() == 'n' {
				_, err = s.lit(s.i, "null")
				c.ResponseTimeout = nil
				return err
			}
			var v string
			if err = s.setString(&v); err == nil {
				c.ResponseTimeout = &v
			}
		case "jsonrpc":
			var raw []byte
			raw, err = s.value(0)
			if string(raw) == "null" {
				raw = nil
			}
			c.JSONRPC = raw
		default:
			if keyFolds(key) {
				return errFallback
			}
			_, err = s.value(0)
		}
		return err
	})
}

// keyFolds reports whether key is a case-insensitive match of a known field
// that is not an exact match: encoding/json would accept it, so defer to it.
func keyFolds(key []byte) bool {
	if len(key) < 7 || len(key) > 16 {
		return false
	}
	for _, k := range [...]string{"request_id", "shard_token", "command_type", "channel", "created_at", "headers", "response_timeout", "jsonrpc",
		"resp_json", "resp_headers", "resp_code", "resp_type"} {
		if len(k) == len(key) && equalFold(k, key) {
			return true
		}
	}
	return false
}

func equalFold(a string, b []byte) bool {
	for i := range len(a) {
		x, y := a[i], b[i]
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// decodePollFast decodes a poll body into raw command slices and commands.
func decodePollFast(body []byte) ([]Command, []BadCommand, error) {
	b := make([]byte, len(body)) // payloads alias this private copy
	copy(b, body)
	s := &scanner{b: b}
	var cmds []Command
	var bad []BadCommand
	if s.peek() == 'n' {
		if _, err := s.lit(s.i, "null"); err == nil && s.end() == nil {
			return []Command{}, nil, nil
		}
	}
	err := s.object(func(key []byte) error {
		if string(key) != "commands" {
			if len(key) == 8 && equalFold("commands", key) {
				return errFallback
			}
			_, err := s.value(0)
			return err
		}
		if s.peek() == 'n' {
			_, err := s.lit(s.i, "null")
			cmds = nil
			return err
		}
		if err := s.expect('['); err != nil {
			return err
		}
		cmds = cmds[:0]
		if s.peek() == ']' {
			s.i++
			return nil
		}
		for {
			start := s.i
			s.ws()
			var c Command
			if s.peek() != '{' {
				if _, err := s.value(0); err != nil {
					return err
				}
				bad = append(bad, BadCommand{Err: errors.New("command is not an object")})
			} else if err := s.command(&c); err != nil {
				if err == errFallback {
					return err
				}
				// Skip this element if it is valid JSON of the wrong shape.
				s.i = start
				if _, verr := s.value(0); verr != nil {
					return verr
				}
				var id struct {
					RequestID  string `json:"request_id"`
					ShardToken string `json:"shard_token"`
				}
				_ = json.Unmarshal(b[start:s.i], &id)
				bad = append(bad, BadCommand{RequestID: id.RequestID, ShardToken: id.ShardToken, Err: err})
			} else if verr := c.Validate(); verr != nil {
				bad = append(bad, BadCommand{RequestID: c.RequestID, ShardToken: c.ShardToken, Channel: c.Channel, Err: verr})
			} else {
				if c.Channel == "" {
					c.Channel = DefaultChannel
				}
				cmds = append(cmds, c)
			}
			ch := s.peek()
			s.i++
			if ch == ']' {
				return nil
			}
			if ch != ',' {
				return errSyntax
			}
		}
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, nil, err
	}
	if cmds == nil {
		cmds = []Command{}
	}
	return cmds, bad, nil
}

// DecodeResponse decodes the body of a response POST. resp_json is kept raw
// (a sub-slice of a private copy of b); "null" decodes to nil.
func DecodeResponse(body []byte) (Response, error) {
	var r Response
	b := make([]byte, len(body))
	copy(b, body)
	s := &scanner{b: b}
	if s.peek() == 'n' {
		if _, err := s.lit(s.i, "null"); err == nil && s.end() == nil {
			return r, nil
		}
	}
	err := s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "request_id":
			err = s.setString(&r.RequestID)
		case "channel":
			err = s.setString(&r.Channel)
		case "resp_type":
			err = s.setString(&r.RespType)
		case "resp_headers":
			r.RespHeaders, err = s.headers(r.RespHeaders)
		case "resp_json":
			var raw []byte
			raw, err = s.value(0)
			if string(raw) == "null" {
				raw = nil
			}
			r.RespJSON = raw
		case "resp_code":
			s.ws()
			start := s.i
			if s.peek() == 'n' {
				_, err = s.lit(s.i, "null")
				return err
			}
			if err = s.number(); err != nil {
				return err
			}
			n, perr := strconv.Atoi(string(b[start:s.i]))
			if perr != nil {
				return errFallback
			}
			r.RespCode = n
		default:
			if keyFolds(key) {
				return errFallback
			}
			_, err = s.value(0)
		}
		return err
	})
	if err == nil {
		err = s.end()
	}
	if err == errFallback {
		var r2 Response
		if err := json.Unmarshal(body, &r2); err != nil {
			return Response{}, err
		}
		if string(r2.RespJSON) == "null" {
			r2.RespJSON = nil
		}
		return r2, nil
	}
	if err != nil {
		return Response{}, err
	}
	return r, nil
}

// AppendPollResponse appends the poll body {"commands":[…]} for cmds to dst.
// JSON-RPC payloads are written as they are (they were validated on the way in).
func AppendPollResponse(dst []byte, cmds []Command) []byte {
	dst = append(dst, `{"commands":[`...)
	for i := range cmds {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = appendCommand(dst, &cmds[i])
	}
	return append(dst, "]}"...)
}

func appendCommand(dst []byte, c *Command) []byte {
	dst = append(dst, `{"request_id":`...)
	dst = appendJSONString(dst, c.RequestID)
	dst = append(dst, `,"shard_token":`...)
	dst = appendJSONString(dst, c.ShardToken)
	dst = append(dst, `,"command_type":`...)
	dst = appendJSONString(dst, c.CommandType)
	if c.Channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = appendJSONString(dst, c.Channel)
	}
	dst = append(dst, `,"created_at":`...)
	dst = appendJSONString(dst, c.CreatedAt)
	dst = append(dst, `,"headers":`...)
	dst = AppendHeaders(dst, c.Headers)
	if c.ResponseTimeout != nil {
		dst = append(dst, `,"response_timeout":`...)
		dst = appendJSONString(dst, *c.ResponseTimeout)
	}
	if len(c.JSONRPC) > 0 {
		dst = append(dst, `,"jsonrpc":`...)
		dst = append(dst, c.JSONRPC...)
	}
	return append(dst, '}')
}

// AppendHeaders appends a multi-valued header map as a JSON object ({} for nil).
func AppendHeaders(dst []byte, h map[string][]string) []byte {
	dst = append(dst, '{')
	first := true
	for k, vs := range h {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = appendJSONString(dst, k)
		dst = append(dst, ":["...)
		for i, v := range vs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSONString(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}

// appendJSONString appends s as a JSON string. strconv.AppendQuote is not
// JSON (it emits \x escapes), so anything but plain printable ASCII goes
// through encoding/json.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= 0x7f || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			b, _ := json.Marshal(s)
			return append(dst, b...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}
