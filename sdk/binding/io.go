package binding

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/internal/abi"
	"github.com/sluicemcp/sluice/sdk/internal/hostapi"
)

// Errors of the host calls (HTTP, Exchange, Notify, Progress): a *HostError
// matches one of these with errors.Is.
var (
	// ErrDenied: the binding's config does not allow it (a host off the
	// allow-list, a command not configured, no http config at all).
	ErrDenied = errors.New("denied by the binding's config")
	// ErrInvalid: the request was malformed (a bad URL, say).
	ErrInvalid = errors.New("invalid request")
	// ErrFailed: the operation failed (connection refused, the command
	// exited, the client is gone).
	ErrFailed = errors.New("failed")
	// ErrTooLarge: the response or output exceeds the configured limit.
	ErrTooLarge = errors.New("too large")
	// ErrTimeout: the operation timed out or the call was cancelled.
	ErrTimeout = errors.New("timed out")
)

// HostError is a host call that was refused or failed. Code is the host's
// negative result (sdk/ABI.md), Message its explanation.
type HostError struct {
	Code    int32
	Message string
}

func (e *HostError) Error() string {
	return fmt.Sprintf("host: %v: %s", e.Unwrap(), e.Message)
}

// Unwrap returns the Err* value of the code.
func (e *HostError) Unwrap() error {
	switch e.Code {
	case -1:
		return ErrDenied
	case -2:
		return ErrInvalid
	case -4:
		return ErrTooLarge
	case -5:
		return ErrTimeout
	}
	return ErrFailed
}

func hostError(code int32, msg string) error { return &HostError{Code: code, Message: msg} }

// HTTPRequest is a request a binding sends through the host.
type HTTPRequest struct {
	Method string // "" = GET
	URL    string // absolute http:// or https:// URL on the allow-list
	Header sdk.Headers
	Body   []byte
}

// HTTPResponse is the host's answer to an HTTPRequest.
type HTTPResponse struct {
	Status int
	Header sdk.Headers
	Body   []byte
}

// HTTP sends req through the host. Only origins on the binding's
// allow-list are reachable (anything else is ErrDenied); the host bounds the
// time and the response size, follows redirects only within the allow-list,
// and adds the secret headers the operator configured (the plugin never
// sees them). A response with an error status is a response, not an error.
func HTTP(req HTTPRequest) (*HTTPResponse, error) {
	io := hostapi.GetIO()
	if io == nil {
		return nil, hostError(-1, "no host I/O")
	}
	out, code, msg := io.HTTP(AppendHTTPRequest(nil, req))
	if code != 0 {
		return nil, hostError(code, msg)
	}
	return DecodeHTTPResponse(out)
}

// AppendHTTPRequest appends req in the encoding of http_request (sdk/ABI.md):
// string method, string url, u32 n, n × (string name, string value), string
// body. Hosts and tests use it.
func AppendHTTPRequest(b []byte, req HTTPRequest) []byte {
	m := req.Method
	if m == "" {
		m = "GET"
	}
	b = abi.AppendString(b, m)
	b = abi.AppendString(b, req.URL)
	return appendHeadersBody(b, req.Header, req.Body)
}

// appendHeadersBody appends u32 n, n × (string name, string value), string
// body.
func appendHeadersBody(b []byte, h sdk.Headers, body []byte) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(len(h)))
	for _, x := range h {
		b = abi.AppendString(b, x.Name)
		b = abi.AppendString(b, x.Value)
	}
	b = binary.LittleEndian.AppendUint32(b, uint32(len(body)))
	return append(b, body...)
}

// AppendHTTPResponse appends resp in the encoding the host answers
// http_request with: u32 status, u32 n, n × (string name, string value),
// string body. Tests use it.
func AppendHTTPResponse(b []byte, resp *HTTPResponse) []byte {
	b = binary.LittleEndian.AppendUint32(b, uint32(resp.Status))
	return appendHeadersBody(b, resp.Header, resp.Body)
}

// DecodeHTTPRequest decodes AppendHTTPRequest's encoding (copies).
func DecodeHTTPRequest(b []byte) (HTTPRequest, error) {
	r := abi.Reader{B: b}
	req := HTTPRequest{Method: string(r.Bytes()), URL: string(r.Bytes())}
	n := r.U32()
	if uint64(n)*8 > uint64(len(b)) {
		return HTTPRequest{}, errors.New("binding: http request header count overruns it")
	}
	req.Header, req.Body = headersBody(&r, n)
	if r.Err || r.Off != len(b) {
		return HTTPRequest{}, errors.New("binding: malformed http request")
	}
	return req, nil
}

// DecodeHTTPResponse decodes the host's http_request answer (copies).
func DecodeHTTPResponse(b []byte) (*HTTPResponse, error) {
	r := abi.Reader{B: b}
	resp := &HTTPResponse{Status: int(r.U32())}
	n := r.U32()
	if uint64(n)*8 > uint64(len(b)) {
		return nil, errors.New("binding: http response header count overruns it")
	}
	resp.Header, resp.Body = headersBody(&r, n)
	if r.Err || r.Off != len(b) {
		return nil, errors.New("binding: malformed http response from the host")
	}
	return resp, nil
}

// Exchange runs one exchange with the command the operator configured under
// name: for a line command, input is written as one line to the running
// program and one line of its output (without the line break) comes back;
// for a run command, the program starts with input as its stdin and its
// whole stdout comes back. The plugin never chooses the program or its
// arguments.
func Exchange(command string, input []byte) ([]byte, error) {
	io := hostapi.GetIO()
	if io == nil {
		return nil, hostError(-1, "no host I/O")
	}
	out, code, msg := io.Process(command, input)
	if code != 0 {
		return nil, hostError(code, msg)
	}
	return append([]byte(nil), out...), nil
}

// headersBody reads n × (string name, string value), string body (copies).
func headersBody(r *abi.Reader, n uint32) (sdk.Headers, []byte) {
	var h sdk.Headers
	for range n {
		h = append(h, sdk.Header{Name: string(r.Bytes()), Value: string(r.Bytes())})
	}
	return h, append([]byte(nil), r.Bytes()...)
}
