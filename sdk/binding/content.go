package binding

import (
	"encoding/base64"
	"strconv"

	"github.com/sluicemcp/sluice/sdk"
)

// Content is one content block of a tool result, already JSON.
type Content struct{ raw []byte }

// Text is a text content block.
func Text(s string) Content {
	b := append(make([]byte, 0, len(s)+32), `{"type":"text","text":`...)
	b = sdk.AppendJSONString(b, s)
	return Content{raw: append(b, '}')}
}

// Image is an image content block of data with its MIME type.
func Image(data []byte, mimeType string) Content {
	b := append(make([]byte, 0, base64.StdEncoding.EncodedLen(len(data))+64), `{"type":"image","data":"`...)
	b = base64.StdEncoding.AppendEncode(b, data)
	b = append(b, `","mimeType":`...)
	b = sdk.AppendJSONString(b, mimeType)
	return Content{raw: append(b, '}')}
}

// ResourceLink is a resource_link content block pointing at uri.
func ResourceLink(uri, name, mimeType string) Content {
	b := append([]byte(nil), `{"type":"resource_link","uri":`...)
	b = sdk.AppendJSONString(b, uri)
	b = append(b, `,"name":`...)
	b = sdk.AppendJSONString(b, name)
	if mimeType != "" {
		b = append(b, `,"mimeType":`...)
		b = sdk.AppendJSONString(b, mimeType)
	}
	return Content{raw: append(b, '}')}
}

// RawContent is a content block given as a JSON object, passed as is.
func RawContent(obj []byte) Content { return Content{raw: obj} }

// ToolResult is what a tool returns. A tool that fails in a way the model
// should see (a bad argument, an upstream error) returns a result with
// IsError set, not a JSON-RPC error.
type ToolResult struct {
	Content []Content
	// Structured is the structuredContent object (optional; a JSON object
	// matching the tool's OutputSchema).
	Structured []byte
	IsError    bool
}

// TextResult is a result of one text block.
func TextResult(s string) ToolResult { return ToolResult{Content: []Content{Text(s)}} }

// ErrorResult is an error result of one text block.
func ErrorResult(msg string) ToolResult {
	return ToolResult{Content: []Content{Text(msg)}, IsError: true}
}

// JSONResult is a result carrying obj (a JSON object) as structuredContent
// and, for clients that read only content, as one text block.
func JSONResult(obj []byte) ToolResult {
	return ToolResult{Content: []Content{Text(string(obj))}, Structured: obj}
}

// appendJSON appends the result object.
func (r ToolResult) appendJSON(b []byte) []byte {
	b = append(b, `{"content":[`...)
	for i, c := range r.Content {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, c.raw...)
	}
	b = append(b, ']')
	if len(r.Structured) > 0 {
		b = append(b, `,"structuredContent":`...)
		b = append(b, r.Structured...)
	}
	if r.IsError {
		b = append(b, `,"isError":true`...)
	}
	return append(b, '}')
}

// Args is the raw "arguments" object of a tools/call ({} when absent).
// Accessors read one member without decoding the rest.
type Args []byte

// Raw returns the raw JSON value of the argument name.
func (a Args) Raw(name string) ([]byte, bool) { return member(a, name) }

// String returns the argument name when it is a JSON string.
func (a Args) String(name string) (string, bool) {
	v, ok := member(a, name)
	if !ok || len(v) == 0 || v[0] != '"' {
		return "", false
	}
	return unquote(v)
}

// Number returns the argument name when it is a JSON number.
func (a Args) Number(name string) (float64, bool) {
	v, ok := member(a, name)
	if !ok || len(v) == 0 || !(v[0] == '-' || v[0] >= '0' && v[0] <= '9') {
		return 0, false
	}
	f, err := strconv.ParseFloat(string(v), 64)
	return f, err == nil
}

// Bool returns the argument name when it is true or false.
func (a Args) Bool(name string) (value, ok bool) {
	v, found := member(a, name)
	switch {
	case found && string(v) == "true":
		return true, true
	case found && string(v) == "false":
		return false, true
	}
	return false, false
}

// Each calls f with each argument's name and raw JSON value, in order,
// until f returns false.
func (a Args) Each(f func(name string, raw []byte) bool) {
	eachMember(a, func(k, v []byte) bool { return f(string(k), v) })
}
