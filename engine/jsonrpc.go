package engine

import (
	"bytes"
	"encoding/json"
	"strconv"

	"github.com/sluicemcp/sluice/engine/internal/jsonscan"
)

// Peek is what the engine reads of a JSON-RPC message without decoding the rest:
// the raw id (nil when absent), the method, and the tool name of a tools/call.
type Peek struct {
	// JSONRPC is the "jsonrpc" member when it is a string ("2.0").
	JSONRPC string
	ID      json.RawMessage
	// IDNull is true when the message has "id": null (ID is then nil).
	IDNull bool
	Method string
	Tool   string
	// HasResult is true for a response (it has result or error).
	HasResult bool
}

// PeekMessage reads the routing fields of one JSON-RPC message in one pass
// without decoding the rest. It fails on anything that is not a single valid
// JSON object (a batch included). Member names match exactly, as JSON-RPC
// requires; "method" must be a string when present.
func PeekMessage(b []byte) (Peek, error) {
	s := &jsonscan.Scanner{B: b}
	if s.Peek() != '{' {
		return Peek{}, errNotObject
	}
	var p Peek
	var name []byte
	err := s.Object(func(key []byte) error {
		switch string(key) {
		case "id":
			v, err := s.Value(0)
			if err != nil {
				return err
			}
			if string(v) == "null" {
				p.ID, p.IDNull = nil, true
			} else {
				p.ID = json.RawMessage(v)
			}
			return nil
		case "method":
			if s.Peek() == 'n' {
				_, err := s.Lit(s.I, "null")
				return err
			}
			if s.Peek() != '"' {
				return errMethodType
			}
			m, err := s.Str()
			p.Method = m
			return err
		case "params":
			if s.Peek() != '{' {
				_, err := s.Value(0)
				return err
			}
			return s.Object(func(k []byte) error {
				v, err := s.Value(1)
				if err == nil && string(k) == "name" {
					name = v
				}
				return err
			})
		case "jsonrpc":
			if s.Peek() == '"' {
				v, err := s.Str()
				p.JSONRPC = v
				return err
			}
		case "result", "error":
			p.HasResult = true
		}
		_, err := s.Value(0)
		return err
	})
	if err == jsonscan.ErrFallback {
		return peekSlow(b)
	}
	if err == nil {
		err = s.End()
	}
	if err != nil {
		return Peek{}, err
	}
	if p.Method == "tools/call" && len(name) > 0 && name[0] == '"' {
		var n string
		if json.Unmarshal(name, &n) == nil {
			p.Tool = n
		}
	}
	return p, nil
}

// peekSlow handles messages with escaped member names.
func peekSlow(b []byte) (Peek, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(b, &m); err != nil {
		return Peek{}, err
	}
	var p Peek
	_ = json.Unmarshal(m["jsonrpc"], &p.JSONRPC)
	if id, ok := m["id"]; ok {
		if string(id) == "null" {
			p.IDNull = true
		} else {
			p.ID = id
		}
	}
	if raw, ok := m["method"]; ok && string(raw) != "null" {
		if err := json.Unmarshal(raw, &p.Method); err != nil {
			return Peek{}, errMethodType
		}
	}
	_, r := m["result"]
	_, e := m["error"]
	p.HasResult = r || e
	if p.Method == "tools/call" {
		var params struct {
			Name string `json:"name"`
		}
		if json.Unmarshal(m["params"], &params) == nil {
			p.Tool = params.Name
		}
	}
	return p, nil
}

type peekError string

func (e peekError) Error() string { return string(e) }

const (
	errNotObject  = peekError("jsonrpc: message is not a JSON object")
	errMethodType = peekError("jsonrpc: method is not a string")
)

// ErrorResponse renders a JSON-RPC error response for id (nil id renders null).
func ErrorResponse(id json.RawMessage, e *RPCError) json.RawMessage {
	var b bytes.Buffer
	b.Grow(96 + len(e.Message) + len(e.Data))
	b.WriteString(`{"jsonrpc":"2.0","id":`)
	if len(id) == 0 {
		b.WriteString("null")
	} else {
		b.Write(id)
	}
	b.WriteString(`,"error":{"code":`)
	b.WriteString(strconv.Itoa(e.Code))
	b.WriteString(`,"message":`)
	msg, _ := json.Marshal(e.Message)
	b.Write(msg)
	if len(e.Data) > 0 {
		b.WriteString(`,"data":`)
		b.Write(e.Data)
	}
	b.WriteString("}}")
	return b.Bytes()
}

// ValidObject reports whether b is a single valid JSON object (whitespace
// around it allowed), in one pass: several times faster than json.Valid, which
// matters for the megabyte bodies a plugin may hand back.
func ValidObject(b []byte) bool {
	s := &jsonscan.Scanner{B: b}
	if s.Peek() != '{' {
		return false
	}
	if _, err := s.Value(0); err != nil {
		return false
	}
	return s.End() == nil
}

// ValidID reports whether id is an id MCP allows: a JSON string or an integer
// (no fraction, no exponent). MCP forbids null ids, and JSON-RPC other types.
func ValidID(id json.RawMessage) bool {
	if len(id) == 0 {
		return false
	}
	if id[0] == '"' {
		return true // PeekMessage has validated the string
	}
	i := 0
	if id[0] == '-' {
		i++
	}
	if i == len(id) {
		return false
	}
	for ; i < len(id); i++ {
		if id[i] < '0' || id[i] > '9' {
			return false
		}
	}
	return true
}
