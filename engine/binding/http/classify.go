package httpbinding

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"net"
	"syscall"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

// Transport error kinds (the x-known-values of transport_error_kind).
const (
	kindDNS             = "dns"
	kindTLS             = "tls"
	kindTimeout         = "timeout"
	kindRefused         = "connection_refused"
	kindReset           = "connection_reset"
	kindAborted         = "connection_aborted"
	kindClosedPipe      = "closed_pipe"
	kindHostUnreachable = "host_unreachable"
	kindNetUnreachable  = "network_unreachable"
	kindDial            = "dial"
	kindEOF             = "eof"
	kindUnexpectedEOF   = "unexpected_eof"
	kindHTTPStatus      = "http_status"
	kindMalformedJSON   = "malformed_json"
	kindInvalidResponse = "invalid_protocol_response"
	kindNonProtocol     = "non_protocol_response"
	kindBodyMissing     = "response_body_missing"
	kindBodyTooLarge    = "response_body_too_large"
	kindBodyUnreadable  = "response_body_unreadable"
	kindUnknown         = "unknown"
)

func protocolError(kind string, err error) *binding.Error {
	return &binding.Error{Source: wire.SourceProtocol, Kind: kind, Err: err}
}

// classify turns an error from the HTTP client into a *binding.Error. inBody
// is true when the response headers had already arrived (the error happened
// while reading the body). A cancelled ctx is returned as a plain wrapped
// error: nobody waits for the answer.
func classify(ctx context.Context, err error, inBody bool) error {
	if errors.Is(err, errTooLarge) {
		return protocolError(kindBodyTooLarge, err)
	}
	if cerr := ctx.Err(); cerr != nil {
		if errors.Is(cerr, context.DeadlineExceeded) {
			return &binding.Error{Source: wire.SourceTimeout, Kind: kindTimeout, Err: err}
		}
		return &canceledError{err: err}
	}
	var dnsErr *net.DNSError
	var netErr net.Error
	var certErr *tls.CertificateVerificationError
	var recErr tls.RecordHeaderError
	var alertErr tls.AlertError
	var unknownAuth x509.UnknownAuthorityError
	var hostErr x509.HostnameError
	var invalidCert x509.CertificateInvalidError
	switch {
	case errors.As(err, &dnsErr):
		return &binding.Error{Source: wire.SourceDNS, Kind: kindDNS, Err: err}
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &alertErr),
		errors.As(err, &unknownAuth), errors.As(err, &hostErr), errors.As(err, &invalidCert):
		return &binding.Error{Source: wire.SourceTLS, Kind: kindTLS, Err: err}
	case errors.Is(err, syscall.ECONNREFUSED):
		return &binding.Error{Source: wire.SourceConnect, Kind: kindRefused, Err: err}
	case errors.Is(err, syscall.EHOSTUNREACH):
		return &binding.Error{Source: wire.SourceConnect, Kind: kindHostUnreachable, Err: err}
	case errors.Is(err, syscall.ENETUNREACH):
		return &binding.Error{Source: wire.SourceConnect, Kind: kindNetUnreachable, Err: err}
	case errors.Is(err, syscall.ECONNRESET):
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindReset, Err: err}
	case errors.Is(err, syscall.ECONNABORTED):
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindAborted, Err: err}
	case errors.Is(err, syscall.EPIPE), errors.Is(err, net.ErrClosed):
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindClosedPipe, Err: err}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindUnexpectedEOF, Err: err}
	case errors.Is(err, io.EOF):
		if inBody {
			return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindUnexpectedEOF, Err: err}
		}
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindEOF, Err: err}
	case errors.As(err, &netErr) && netErr.Timeout():
		return &binding.Error{Source: wire.SourceTimeout, Kind: kindTimeout, Err: err}
	}
	var opErr *net.OpError
	if errors.As(err, &opErr) && opErr.Op == "dial" {
		return &binding.Error{Source: wire.SourceConnect, Kind: kindDial, Err: err}
	}
	if inBody {
		return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindBodyUnreadable, Err: err}
	}
	return &binding.Error{Source: wire.SourceTransportClosed, Kind: kindUnknown, Err: err}
}

// canceledError reports that the caller cancelled the request.
type canceledError struct{ err error }

func (e *canceledError) Error() string { return "mcp server: request canceled: " + e.err.Error() }
func (e *canceledError) Unwrap() []error {
	return []error{context.Canceled, e.err}
}

// peekMessage checks that b is one JSON-RPC message (a JSON object with a
// jsonrpc "2.0" member and a method, a result or an error) and reads its id. The error is a protocol
// *binding.Error.
func peekMessage(b []byte) (engine.Peek, error) {
	var p engine.Peek
	t := bytes.TrimLeft(b, " \t\r\n")
	if len(t) == 0 {
		return p, protocolError(kindBodyMissing, errors.New("empty message"))
	}
	if t[0] != '{' {
		if json.Valid(t) {
			return p, protocolError(kindInvalidResponse, errors.New("message is not a JSON object"))
		}
		return p, protocolError(kindMalformedJSON, errors.New("message is not JSON"))
	}
	p, err := engine.PeekMessage(t)
	if err != nil {
		if json.Valid(t) { // valid JSON of the wrong shape (a non-string method)
			return p, protocolError(kindInvalidResponse, err)
		}
		return p, protocolError(kindMalformedJSON, err)
	}
	if p.JSONRPC != "2.0" || (p.Method == "" && !p.HasResult) {
		return p, protocolError(kindInvalidResponse, errors.New("object is not a JSON-RPC message"))
	}
	return p, nil
}

// sameID reports whether two raw JSON-RPC ids name the same request.
func sameID(a, b json.RawMessage) bool {
	a, b = bytes.TrimSpace(a), bytes.TrimSpace(b)
	if len(a) == 0 || len(b) == 0 {
		return false
	}
	if bytes.Equal(a, b) {
		return true
	}
	var va, vb any
	if json.Unmarshal(a, &va) != nil || json.Unmarshal(b, &vb) != nil {
		return false
	}
	switch x := va.(type) {
	case string:
		y, ok := vb.(string)
		return ok && x == y
	case float64:
		y, ok := vb.(float64)
		return ok && x == y
	}
	return false
}

// requestID returns the id of the request body, or nil.
func requestID(body []byte) json.RawMessage {
	p, err := engine.PeekMessage(body)
	if err != nil {
		return nil
	}
	return p.ID
}
