package sdk

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"

	"github.com/sluicemcp/sluice/sdk/internal/abi"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// Action is what a plugin decides for a message. The values are part of the ABI.
type Action uint8

// Actions.
const (
	ActionContinue Action = 0 // pass the message on unchanged
	ActionReplace  Action = 1 // pass on a new body and/or header edits
	ActionRespond  Action = 2 // answer a request with a full JSON-RPC response
	ActionReject   Action = 3 // answer with a JSON-RPC error
	ActionDrop     Action = 4 // drop a notification
)

// String returns the action's name.
func (a Action) String() string {
	switch a {
	case ActionContinue:
		return "continue"
	case ActionReplace:
		return "replace"
	case ActionRespond:
		return "respond"
	case ActionReject:
		return "reject"
	case ActionDrop:
		return "drop"
	}
	return "action(" + strconv.Itoa(int(a)) + ")"
}

// HeaderOp is a header edit operation. The values are part of the ABI.
type HeaderOp uint8

// Header edit operations.
const (
	HeaderSet    HeaderOp = 1 // replace all values of the header
	HeaderAdd    HeaderOp = 2 // add one value
	HeaderDelete HeaderOp = 3 // delete every value
)

// HeaderEdit is one header edit of a Result.
type HeaderEdit struct {
	Op    HeaderOp
	Name  string
	Value string
}

// Result is a plugin's answer for one message. Build it with Continue, Replace,
// Respond, Reject, RejectData or Drop, then chain header edits:
//
//	return sdk.Continue().SetHeader("X-Team", "infra").DelHeader("X-Debug")
type Result struct {
	Action Action
	// Status is the HTTP status for Respond and Reject (0 = 200).
	Status int
	// Edits are header edits applied in order.
	Edits []HeaderEdit
	// Body replaces the message (Replace, when HasBody), is the full response
	// (Respond), or is the JSON-RPC error object (Reject).
	Body    []byte
	HasBody bool
}

// Continue passes the message on unchanged (the cheap path).
func Continue() Result { return Result{} }

// Replace passes body on instead of the message. body must be a single JSON
// object; it is copied when the handler returns, so a reused buffer is fine.
func Replace(body []byte) Result {
	return Result{Action: ActionReplace, Body: body, HasBody: true}
}

// ReplaceHeaders passes the message on with header edits and the body unchanged.
func ReplaceHeaders(edits ...HeaderEdit) Result {
	return Result{Action: ActionReplace, Edits: edits}
}

// Respond answers a request with body, a full JSON-RPC response, and status
// (0 = 200).
func Respond(status int, body []byte) Result {
	return Result{Action: ActionRespond, Status: status, Body: body, HasBody: true}
}

// Reject answers with the JSON-RPC error {code, message} and HTTP status (0 =
// 200, which MCP clients surface as the tool call's error). The host wraps it in
// a response with the request's id.
func Reject(status, code int, message string) Result {
	return RejectData(status, code, message, nil)
}

// RejectData is Reject with a "data" member; data must be JSON (nil = none).
func RejectData(status, code int, message string, data []byte) Result {
	b := make([]byte, 0, 32+len(message)+len(data))
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(code), 10)
	b = append(b, `,"message":`...)
	b = AppendJSONString(b, message)
	if len(data) > 0 {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	}
	b = append(b, '}')
	return Result{Action: ActionReject, Status: status, Body: b, HasBody: true}
}

// Drop drops a notification (the host refuses it for anything else).
func Drop() Result { return Result{Action: ActionDrop} }

func (r Result) edit(op HeaderOp, name, value string) Result {
	if r.Action == ActionContinue {
		r.Action = ActionReplace
	}
	r.Edits = append(r.Edits, HeaderEdit{Op: op, Name: name, Value: value})
	return r
}

// SetHeader adds an edit that replaces every value of name with value. On a
// Continue result it turns it into a Replace that keeps the body.
func (r Result) SetHeader(name, value string) Result { return r.edit(HeaderSet, name, value) }

// AddHeader adds an edit that adds one value to name.
func (r Result) AddHeader(name, value string) Result { return r.edit(HeaderAdd, name, value) }

// DelHeader adds an edit that deletes every value of name.
func (r Result) DelHeader(name string) Result { return r.edit(HeaderDelete, name, "") }

// IsContinue reports whether r leaves the message unchanged (empty answer).
func (r Result) IsContinue() bool { return r.Action == ActionContinue && len(r.Edits) == 0 }

// AppendAnswer appends r encoded as a guest→host answer to dst. A Continue
// result with no edits appends nothing: the empty answer means continue.
func AppendAnswer(dst []byte, r Result) []byte {
	if r.IsContinue() {
		return dst
	}
	var flags byte
	if r.HasBody && (r.Action == ActionReplace || r.Action == ActionRespond) {
		flags |= 1
	}
	withBody := flags&1 != 0 || r.Action == ActionReject
	dst = append(dst, byte(r.Action), flags, 0, 0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(r.Status))
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Edits)))
	for _, e := range r.Edits {
		dst = append(dst, byte(e.Op))
		dst = abi.AppendString(dst, e.Name)
		dst = abi.AppendString(dst, e.Value)
	}
	if withBody {
		dst = binary.LittleEndian.AppendUint32(dst, uint32(len(r.Body)))
		dst = append(dst, r.Body...)
	} else {
		dst = binary.LittleEndian.AppendUint32(dst, 0)
	}
	return dst
}

// DecodeAnswer decodes an answer (the empty answer is Continue). The result's
// strings and Body are copies. Hosts and tests use it.
func DecodeAnswer(b []byte) (Result, error) {
	if len(b) == 0 {
		return Continue(), nil
	}
	if len(b) < 16 {
		return Result{}, errors.New("sdk: answer truncated")
	}
	r := Result{Action: Action(b[0]), Status: int(binary.LittleEndian.Uint32(b[4:]))}
	if r.Action > ActionDrop {
		return Result{}, fmt.Errorf("sdk: answer action %d unknown", b[0])
	}
	rd := abi.Reader{B: b, Off: 8}
	n := rd.U32()
	if uint64(n)*9 > uint64(len(b)-rd.Off) {
		return Result{}, errors.New("sdk: answer header count too large")
	}
	for range n {
		if rd.Off >= len(b) {
			return Result{}, errors.New("sdk: answer truncated")
		}
		op := HeaderOp(b[rd.Off])
		rd.Off++
		name, value := rd.Bytes(), rd.Bytes()
		if rd.Err {
			return Result{}, errors.New("sdk: answer truncated")
		}
		if op < HeaderSet || op > HeaderDelete {
			return Result{}, fmt.Errorf("sdk: answer header op %d unknown", op)
		}
		r.Edits = append(r.Edits, HeaderEdit{Op: op, Name: string(name), Value: string(value)})
	}
	body := rd.Bytes()
	if rd.Err {
		return Result{}, errors.New("sdk: answer truncated")
	}
	if rd.Off != len(b) {
		return Result{}, fmt.Errorf("sdk: answer has %d trailing bytes", len(b)-rd.Off)
	}
	if b[1]&1 != 0 || r.Action == ActionReject {
		r.Body = append([]byte{}, body...)
		r.HasBody = true
	}
	return r, nil
}

// AppendJSONString appends s as a JSON string literal (quotes included) to
// dst: it is rawjson.AppendString. Invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte { return rawjson.AppendString(dst, s) }
