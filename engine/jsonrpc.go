package engine

import (
	"bytes"
	"encoding/json"
	"strconv"
)

// Peek is what the engine reads of a JSON-RPC message without decoding the rest:
// the raw id (nil when absent), the method, and the tool name of a tools/call.
type Peek struct {
	ID     json.RawMessage
	Method string
	Tool   string
	// HasResult is true for a response (it has result or error).
	HasResult bool
}

type peekDoc struct {
	ID     json.RawMessage `json:"id"`
	Method string          `json:"method"`
	Params *struct {
		Name json.RawMessage `json:"name"`
	} `json:"params"`
	Result json.RawMessage `json:"result"`
	Error  json.RawMessage `json:"error"`
}

// PeekMessage reads the routing fields of one JSON-RPC message. It fails on
// anything that is not a single JSON object (a batch included).
func PeekMessage(b []byte) (Peek, error) {
	var d peekDoc
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 || t[0] != '{' {
		return Peek{}, errNotObject
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return Peek{}, err
	}
	p := Peek{Method: d.Method, HasResult: d.Result != nil || d.Error != nil}
	if len(d.ID) > 0 && !bytes.Equal(d.ID, []byte("null")) {
		p.ID = d.ID
	}
	if d.Method == "tools/call" && d.Params != nil && len(d.Params.Name) > 0 {
		var name string
		if json.Unmarshal(d.Params.Name, &name) == nil {
			p.Tool = name
		}
	}
	return p, nil
}

type peekError string

func (e peekError) Error() string { return string(e) }

const errNotObject = peekError("jsonrpc: message is not a JSON object")

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
