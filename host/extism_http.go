package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"
)

// extismHTTPRequest is the request document of the Extism kernel's
// http_request.
type extismHTTPRequest struct {
	URL     string            `json:"url"`
	Method  string            `json:"method"`
	Headers map[string]string `json:"headers"`
}

// hostAllowed reports whether host matches one of the allowed-hosts
// patterns: an exact name, or a pattern with * wildcards ("*.example.com").
func hostAllowed(allowed []string, host string) bool {
	for _, p := range allowed {
		if p == host {
			return true
		}
		if ok, err := path.Match(p, host); err == nil && ok {
			return true
		}
	}
	return false
}

// httpClient returns the stage's client for Extism's http_request: it
// follows redirects only to allowed hosts.
func (s *Stage) httpClient() *http.Client {
	s.httpOnce.Do(func() {
		s.http = &http.Client{
			CheckRedirect: func(req *http.Request, via []*http.Request) error {
				if len(via) >= 10 {
					return errors.New("stopped after 10 redirects")
				}
				if !hostAllowed(s.cfg.AllowedHosts, req.URL.Hostname()) {
					return fmt.Errorf("redirect to host %q, which is not in allowed-hosts", req.URL.Hostname())
				}
				return nil
			},
		}
	})
	return s.http
}

// httpRequest implements http_request(request, body) -> response body: only
// to the stage's allowed hosts (none by default), within the call's
// deadline, the response capped at max-message-size. A refused or failed
// request traps the guest.
func (i *extismInstance) httpRequest(ctx context.Context, reqOff, bodyOff uint64) uint64 {
	s, k := i.b.s, i.k
	fail := func(format string, args ...any) {
		panic(fmt.Errorf("%s.%s: %s", ModuleExtismEnv, kHTTPRequest, fmt.Sprintf(format, args...)))
	}
	k.httpStatus = 0
	raw, ok := k.bytes(reqOff)
	if !ok {
		fail("request offset %d is not an allocated block", reqOff)
	}
	var r extismHTTPRequest
	if err := json.Unmarshal(raw, &r); err != nil {
		fail("request: %v", err)
	}
	k.release(reqOff)
	u, err := url.Parse(r.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		fail("url %q is not an absolute http(s) URL", r.URL)
	}
	if !hostAllowed(s.cfg.AllowedHosts, u.Hostname()) {
		fail("host %q is not in allowed-hosts", u.Hostname())
	}
	var body io.Reader
	if bodyOff != 0 {
		b, ok := k.bytes(bodyOff)
		if !ok {
			fail("body offset %d is not an allocated block", bodyOff)
		}
		body = bytes.NewReader(bytes.Clone(b))
		k.release(bodyOff)
	}
	method := strings.ToUpper(r.Method)
	if method == "" {
		method = http.MethodGet
	}
	ctx, cancel := context.WithDeadline(ctx, i.deadline)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, u.String(), body)
	if err != nil {
		fail("%v", err)
	}
	for k, v := range r.Headers {
		req.Header.Set(k, v)
	}
	start := time.Now()
	resp, err := s.httpClient().Do(req)
	if err != nil {
		if inner := errors.Unwrap(err); inner != nil {
			err = inner // a *url.Error repeats the URL, which may hold secrets
		}
		fail("%s %s: %v", method, u.Host, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(s.cfg.MaxMessageSize)+1))
	if err != nil {
		fail("%s %s: read response: %v", method, u.Host, err)
	}
	if len(b) > s.cfg.MaxMessageSize {
		fail("%s %s: response exceeds max-message-size %d", method, u.Host, s.cfg.MaxMessageSize)
	}
	s.log.Debug("plugin: http request", "plugin", s.name, "method", method, "host", u.Host,
		"status", resp.StatusCode, "duration", time.Since(start))
	k.httpStatus = int32(resp.StatusCode)
	if len(b) == 0 {
		return 0
	}
	return k.write(b)
}
