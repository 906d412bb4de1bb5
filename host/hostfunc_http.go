package host

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/tetratelabs/wazero/api"
)

// The HTTP capability: a binding plugin sends HTTP requests, but only to the
// origins its config allows, bounded in time and size, never redirected off
// the allow-list, with secret headers the host adds and the guest never sees.

// Defaults for HTTPConfig's zero fields.
const (
	// DefaultHTTPTimeout bounds one request, its response body included.
	DefaultHTTPTimeout = 10 * time.Second
	// DefaultHTTPMaxResponseBytes bounds one response body.
	DefaultHTTPMaxResponseBytes = 4 << 20
	// maxRedirects bounds the redirects one request follows (each must stay
	// on the allow-list).
	maxRedirects = 5
)

// HTTPConfig is what a binding plugin may reach with http_request. The zero
// value allows nothing.
type HTTPConfig struct {
	// AllowedHosts are the origins the plugin may reach: scheme://host[:port]
	// (the port defaults to the scheme's). Empty: every request is refused.
	AllowedHosts []string
	// Timeout bounds one request, response body included (0 =
	// DefaultHTTPTimeout). The call's context bounds it too.
	Timeout time.Duration
	// MaxResponseBytes bounds one response body (0 =
	// DefaultHTTPMaxResponseBytes).
	MaxResponseBytes int
	// Headers are set by the host on every request to their origin,
	// overriding the guest's; their values (resolved secrets) never reach the
	// guest or the logs, and never follow a redirect to another origin.
	Headers []HTTPHeader
	// Transport sends the requests (nil = a net/http Transport with the
	// environment's proxy settings). Tests inject one.
	Transport http.RoundTripper
}

// HTTPHeader is one header the host adds to requests to Origin.
type HTTPHeader struct {
	Origin string // scheme://host[:port], one of AllowedHosts
	Name   string
	Value  string // the resolved value (a secret): never logged
}

// httpAccess is a binding's HTTP capability, built once at load.
type httpAccess struct {
	allowed map[string]bool
	inject  map[string][]HTTPHeader // by normalized origin
	client  *http.Client
	timeout time.Duration
	max     int
}

// NormalizeOrigin returns the origin of rawURL as scheme://host:port (lower
// case, default port filled in), and an error for anything but an absolute
// http or https URL. An allow-list entry must be an origin: no path beyond
// "/", no query, no user info.
func NormalizeOrigin(rawURL string, entry bool) (string, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return "", fmt.Errorf("%q is not a URL", rawURL)
	}
	return originOf(u, entry, rawURL)
}

func originOf(u *url.URL, entry bool, raw string) (string, error) {
	scheme := strings.ToLower(u.Scheme)
	if (scheme != "http" && scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("%q: want an absolute http:// or https:// URL", raw)
	}
	if entry && ((u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.User != nil || u.Fragment != "") {
		return "", fmt.Errorf("%q: want an origin such as https://api.example.com:8443 (no path, query or user)", raw)
	}
	host, port := strings.ToLower(u.Hostname()), u.Port()
	if port == "" {
		port = map[string]string{"http": "80", "https": "443"}[scheme]
	}
	return scheme + "://" + net.JoinHostPort(host, port), nil
}

// validate refuses a limit outside its bounds (zero means the default).
func (c *HTTPConfig) validate() error {
	switch {
	case c.Timeout < 0 || c.Timeout > MaxTimeLimit:
		return fmt.Errorf("timeout: %s is out of range 0..%s", c.Timeout, MaxTimeLimit)
	case c.MaxResponseBytes < 0 || c.MaxResponseBytes > MaxSizeLimit:
		return fmt.Errorf("max-response-bytes: %d is out of range 0..%d", c.MaxResponseBytes, MaxSizeLimit)
	}
	return nil
}

func newHTTPAccess(c HTTPConfig) (*httpAccess, error) {
	if err := c.validate(); err != nil {
		return nil, err
	}
	a := &httpAccess{allowed: map[string]bool{}, inject: map[string][]HTTPHeader{}, timeout: c.Timeout, max: c.MaxResponseBytes}
	if a.timeout <= 0 {
		a.timeout = DefaultHTTPTimeout
	}
	if a.max <= 0 {
		a.max = DefaultHTTPMaxResponseBytes
	}
	for _, h := range c.AllowedHosts {
		o, err := NormalizeOrigin(h, true)
		if err != nil {
			return nil, fmt.Errorf("allowed host %w", err)
		}
		a.allowed[o] = true
	}
	for _, h := range c.Headers {
		o, err := NormalizeOrigin(h.Origin, true)
		if err != nil {
			return nil, fmt.Errorf("header %s: origin %w", h.Name, err)
		}
		if !a.allowed[o] {
			return nil, fmt.Errorf("header %s: origin %s is not an allowed host", h.Name, o)
		}
		if h.Name == "" || strings.ContainsAny(h.Name, " \t\r\n:") || strings.ContainsAny(h.Value, "\r\n") {
			return nil, fmt.Errorf("header %q: not a valid header", h.Name)
		}
		a.inject[o] = append(a.inject[o], HTTPHeader{Origin: o, Name: http.CanonicalHeaderKey(h.Name), Value: h.Value})
	}
	base := c.Transport
	if base == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.MaxIdleConnsPerHost = 64
		base = t
	}
	a.client = &http.Client{
		Transport: injectTransport{a: a, base: base},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) > maxRedirects {
				return fmt.Errorf("more than %d redirects", maxRedirects)
			}
			if o, err := originOf(req.URL, false, req.URL.Redacted()); err != nil || !a.allowed[o] {
				return &redirectError{origin: o}
			}
			return nil
		},
	}
	return a, nil
}

// redirectError refuses a redirect off the allow-list.
type redirectError struct{ origin string }

func (e *redirectError) Error() string {
	return "redirected to " + e.origin + ", which is not an allowed host"
}

// injectTransport checks every request (redirects included) against the
// allow-list and adds the configured headers of its origin.
type injectTransport struct {
	a    *httpAccess
	base http.RoundTripper
}

func (t injectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	o, err := originOf(req.URL, false, req.URL.Redacted())
	if err != nil || !t.a.allowed[o] {
		return nil, &redirectError{origin: o}
	}
	if hs := t.a.inject[o]; len(hs) > 0 {
		req = req.Clone(req.Context())
		for _, h := range hs {
			req.Header[h.Name] = []string{h.Value}
		}
	}
	return t.base.RoundTrip(req)
}

func init() {
	registerHostFunc(hostFunc{name: ImportHTTPRequest, sig: sig{[]api.ValueType{i32, i32, i32, i32}, []api.ValueType{i32}}, fn: hostHTTPRequest})
}

// hostHTTPRequest performs the request encoded at [req_ptr, +req_len) and
// delivers the encoded response (sdk/ABI.md, "http_request").
func hostHTTPRequest(ctx context.Context, s *Stage, mod api.Module, st []uint64) {
	c := callOf(ctx)
	if c == nil {
		st[0] = hostErr(HostErrDenied)
		return
	}
	out, capacity := uint32(st[2]), uint32(st[3])
	a := s.io.http
	if a == nil {
		s.io.refuse("capability", "http")
		st[0] = c.fail(HostErrDenied, "this binding has no http config: no host is allowed")
		return
	}
	req, err := decodeHTTPRequest(guestBytes(mod, uint32(st[0]), uint32(st[1]), ImportHTTPRequest))
	if err != nil {
		st[0] = c.fail(HostErrInvalid, err.Error())
		return
	}
	u, err := url.Parse(req.url)
	if err != nil {
		st[0] = c.fail(HostErrInvalid, "url is not a URL")
		return
	}
	origin, err := originOf(u, false, u.Redacted())
	if err != nil {
		st[0] = c.fail(HostErrInvalid, err.Error())
		return
	}
	if !a.allowed[origin] {
		s.io.refuse("host", origin)
		st[0] = c.fail(HostErrDenied, "host "+origin+" is not on the binding's allow-list")
		return
	}
	c.pause()
	status, header, body, code, msg := a.do(c.ctx, req, u)
	c.resume()
	if code != 0 {
		st[0] = c.fail(code, msg)
		return
	}
	c.buf = encodeHTTPResponse(c.buf[:0], status, header, body)
	st[0] = c.deliver(mod, c.buf, out, capacity, ImportHTTPRequest)
}

// guestHTTPRequest is a decoded http_request input.
type guestHTTPRequest struct {
	method, url string
	header      http.Header
	body        []byte
}

// decodeHTTPRequest reads: string method, string url, u32 n, n × (string
// name, string value), string body. Strings are copied: the request outlives
// nothing, but the HTTP client may read the body from another goroutine.
func decodeHTTPRequest(b []byte) (*guestHTTPRequest, error) {
	r := answerReader{b: b}
	req := &guestHTTPRequest{method: string(r.bytes()), url: string(r.bytes()), header: http.Header{}}
	n := r.u32()
	if r.err == nil && uint64(n)*8 > uint64(len(b)-r.o) {
		return nil, errors.New("request header count overruns the request")
	}
	for j := uint32(0); j < n && r.err == nil; j++ {
		name, val := r.bytes(), r.bytes()
		if r.err == nil {
			if len(name) == 0 || bytes.ContainsAny(name, " \t\r\n:") || bytes.ContainsAny(val, "\r\n") {
				return nil, fmt.Errorf("request header %q is not valid", name)
			}
			req.header.Add(string(name), string(val))
		}
	}
	req.body = bytes.Clone(r.bytes())
	if r.err != nil {
		return nil, fmt.Errorf("request: %w", r.err)
	}
	if r.o != len(b) {
		return nil, fmt.Errorf("request has %d trailing bytes", len(b)-r.o)
	}
	if req.method == "" {
		req.method = http.MethodGet
	}
	return req, nil
}

// do sends req; a non-zero code is a HostErr* with its message.
func (a *httpAccess) do(ctx context.Context, req *guestHTTPRequest, u *url.URL) (int, http.Header, []byte, int32, string) {
	ctx, cancel := context.WithTimeout(ctx, a.timeout)
	defer cancel()
	var body io.Reader
	if len(req.body) > 0 {
		body = bytes.NewReader(req.body)
	}
	hreq, err := http.NewRequestWithContext(ctx, req.method, u.String(), body)
	if err != nil {
		return 0, nil, nil, HostErrInvalid, "method or url refused: " + firstLine(err).Error()
	}
	hreq.Header = req.header
	resp, err := a.client.Do(hreq)
	if err != nil {
		var re *redirectError
		switch {
		case errors.As(err, &re):
			return 0, nil, nil, HostErrDenied, re.Error()
		case ctx.Err() != nil:
			return 0, nil, nil, HostErrTimeout, fmt.Sprintf("no response within %s", a.timeout)
		}
		return 0, nil, nil, HostErrFailed, firstLine(err).Error()
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, int64(a.max)+1))
	switch {
	case err != nil && ctx.Err() != nil:
		return 0, nil, nil, HostErrTimeout, fmt.Sprintf("response body not read within %s", a.timeout)
	case err != nil:
		return 0, nil, nil, HostErrFailed, "reading the response body: " + firstLine(err).Error()
	case len(data) > a.max:
		return 0, nil, nil, HostErrTooLarge, fmt.Sprintf("response body exceeds %d bytes", a.max)
	}
	return resp.StatusCode, resp.Header, data, 0, ""
}

// encodeHTTPResponse appends: u32 status, u32 n, n × (string name, string
// value), string body.
func encodeHTTPResponse(dst []byte, status int, h http.Header, body []byte) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(status))
	n := 0
	for _, vs := range h {
		n += len(vs)
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(n))
	for k, vs := range h {
		for _, v := range vs {
			dst = appendString(dst, k)
			dst = appendString(dst, v)
		}
	}
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(body)))
	return append(dst, body...)
}

func appendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
	return append(dst, s...)
}
