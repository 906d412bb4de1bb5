package wire

import (
	"encoding/json"
	"errors"
	"strconv"

	"github.com/sluicemcp/sluice/engine/internal/jsonscan"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

type scanner struct{ jsonscan.Scanner }

var (
	errSyntax   = jsonscan.ErrSyntax
	errFallback = jsonscan.ErrFallback
)

// This file holds the hand-written codec for the hot wire messages (poll
// bodies and response posts). encoding/json validates a document and then
// decodes it in a second pass, and re-validates and compacts every
// json.RawMessage it encodes; on the tunnel's hot path that was a tenth of
// the CPU. The codec below makes one pass, keeps JSON-RPC payloads as
// sub-slices of one private copy of the input, and falls back to
// encoding/json only for rare forms (escaped object keys, unusual strings).
// FuzzCodecMatchesEncodingJSON holds it to encoding/json's answers.

// setString reads a string into *dst; null leaves *dst as it was (as
// encoding/json does); any other type is an error.
func (s *scanner) setString(dst *string) error {
	if s.Peek() == 'n' {
		_, err := s.Lit(s.I, "null")
		return err
	}
	v, err := s.Str()
	if err == nil {
		*dst = v
	}
	return err
}

// headers reads {"name":["v",…],…} into h (null = nil), merging into an
// existing map as encoding/json does.
func (s *scanner) headers(h map[string][]string) (map[string][]string, error) {
	if s.Peek() == 'n' {
		_, err := s.Lit(s.I, "null")
		return nil, err
	}
	if h == nil {
		h = map[string][]string{}
	}
	err := s.Object(func(key []byte) error {
		if s.Peek() == 'n' {
			_, err := s.Lit(s.I, "null")
			h[string(key)] = nil
			return err
		}
		if err := s.Expect('['); err != nil {
			return err
		}
		var vs []string
		if s.Peek() == ']' {
			s.I++
			h[string(key)] = []string{}
			return nil
		}
		for {
			var v string
			if err := s.setString(&v); err != nil {
				return err
			}
			vs = append(vs, v)
			c := s.Peek()
			s.I++
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

// decodeCommand reads one command object. Duplicate keys: the last wins, as
// in encoding/json.
func (s *scanner) command(c *Command) error {
	return s.Object(func(key []byte) error {
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
			if s.Peek() == 'n' {
				_, err = s.Lit(s.I, "null")
				c.ResponseTimeout = nil
				return err
			}
			var v string
			if err = s.setString(&v); err == nil {
				c.ResponseTimeout = &v
			}
		case "jsonrpc":
			var raw []byte
			raw, err = s.Value(0)
			if string(raw) == "null" {
				raw = nil
			}
			c.JSONRPC = raw
		case "caller":
			err = s.setString(&c.Caller)
		case "oauth_as":
			// Rare (one command per OAuth step): encoding/json decodes it.
			var raw []byte
			if raw, err = s.Value(0); err == nil {
				if string(raw) == "null" {
					c.OAuthAS = nil
				} else {
					// Into the existing value, as encoding/json merges a
					// repeated key.
					a := c.OAuthAS
					if a == nil {
						a = &ASRequest{}
					}
					if err = json.Unmarshal(raw, a); err == nil {
						c.OAuthAS = a
					}
				}
			}
		default:
			if keyFolds(key) {
				return errFallback
			}
			_, err = s.Value(0)
		}
		return err
	})
}

// keyFolds reports whether key is a case-insensitive match of a known field
// that is not an exact match: encoding/json would accept it, so defer to it.
func keyFolds(key []byte) bool {
	if len(key) < 6 || len(key) > 16 {
		return false
	}
	for _, k := range [...]string{"request_id", "shard_token", "command_type", "channel", "created_at", "headers", "response_timeout", "jsonrpc", "caller", "oauth_as",
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
	s := &scanner{jsonscan.Scanner{B: b}}
	var cmds []Command
	var bad []BadCommand
	if s.Peek() == 'n' {
		if _, err := s.Lit(s.I, "null"); err == nil && s.End() == nil {
			return []Command{}, nil, nil
		}
	}
	err := s.Object(func(key []byte) error {
		if string(key) != "commands" {
			if len(key) == 8 && equalFold("commands", key) {
				return errFallback
			}
			_, err := s.Value(0)
			return err
		}
		if s.Peek() == 'n' {
			_, err := s.Lit(s.I, "null")
			cmds = nil
			return err
		}
		cmds = cmds[:0]
		return s.Array(func() error {
			start := s.I
			var c Command
			if s.Peek() != '{' {
				if _, err := s.Value(0); err != nil {
					return err
				}
				bad = append(bad, BadCommand{Err: errors.New("command is not an object")})
			} else if err := s.command(&c); err != nil {
				if err == errFallback {
					return err
				}
				// Skip this element if it is valid JSON of the wrong shape.
				s.I = start
				if _, verr := s.Value(0); verr != nil {
					return verr
				}
				var id struct {
					RequestID  string `json:"request_id"`
					ShardToken string `json:"shard_token"`
				}
				_ = json.Unmarshal(b[start:s.I], &id)
				bad = append(bad, BadCommand{RequestID: id.RequestID, ShardToken: id.ShardToken, Err: err})
			} else if verr := c.Validate(); verr != nil {
				bad = append(bad, BadCommand{RequestID: c.RequestID, ShardToken: c.ShardToken, Channel: c.Channel, Err: verr})
			} else {
				if c.Channel == "" {
					c.Channel = DefaultChannel
				}
				cmds = append(cmds, c)
			}
			return nil
		})
	})
	if err == nil {
		err = s.End()
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
	s := &scanner{jsonscan.Scanner{B: b}}
	if s.Peek() == 'n' {
		if _, err := s.Lit(s.I, "null"); err == nil && s.End() == nil {
			return r, nil
		}
	}
	err := s.Object(func(key []byte) error {
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
			raw, err = s.Value(0)
			if string(raw) == "null" {
				raw = nil
			}
			r.RespJSON = raw
		case "resp_code":
			s.WS()
			start := s.I
			if s.Peek() == 'n' {
				_, err = s.Lit(s.I, "null")
				return err
			}
			if err = s.Number(); err != nil {
				return err
			}
			n, perr := strconv.Atoi(string(b[start:s.I]))
			if perr != nil {
				return errFallback
			}
			r.RespCode = n
		default:
			if keyFolds(key) {
				return errFallback
			}
			_, err = s.Value(0)
		}
		return err
	})
	if err == nil {
		err = s.End()
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
	dst = rawjson.AppendString(dst, c.RequestID)
	dst = append(dst, `,"shard_token":`...)
	dst = rawjson.AppendString(dst, c.ShardToken)
	dst = append(dst, `,"command_type":`...)
	dst = rawjson.AppendString(dst, c.CommandType)
	if c.Channel != "" {
		dst = append(dst, `,"channel":`...)
		dst = rawjson.AppendString(dst, c.Channel)
	}
	dst = append(dst, `,"created_at":`...)
	dst = rawjson.AppendString(dst, c.CreatedAt)
	dst = append(dst, `,"headers":`...)
	dst = AppendHeaders(dst, c.Headers)
	if c.ResponseTimeout != nil {
		dst = append(dst, `,"response_timeout":`...)
		dst = rawjson.AppendString(dst, *c.ResponseTimeout)
	}
	if len(c.JSONRPC) > 0 {
		dst = append(dst, `,"jsonrpc":`...)
		dst = append(dst, c.JSONRPC...)
	}
	if c.Caller != "" {
		dst = append(dst, `,"caller":`...)
		dst = rawjson.AppendString(dst, c.Caller)
	}
	if c.OAuthAS != nil {
		b, _ := json.Marshal(c.OAuthAS)
		dst = append(dst, `,"oauth_as":`...)
		dst = append(dst, b...)
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
		dst = rawjson.AppendString(dst, k)
		dst = append(dst, ":["...)
		for i, v := range vs {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = rawjson.AppendString(dst, v)
		}
		dst = append(dst, ']')
	}
	return append(dst, '}')
}
