package httpbinding

import (
	"errors"
	"net/http"
	"strings"
	"testing"
)

// TestServerURL: both HTTP bindings take only an absolute http or https
// URL, and say which binding refused it.
func TestServerURL(t *testing.T) {
	for _, raw := range []string{"ftp://h/mcp", "/mcp", "http://", "http://h/%zz", "localhost:3000/mcp"} {
		_, err := New(Config{URL: raw}, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), "http binding: ") {
			t.Errorf("New(%q): err = %v, want an http binding error", raw, err)
		}
		_, err = NewLegacySSE(LegacyConfig{URL: raw}, Options{})
		if err == nil || !strings.HasPrefix(err.Error(), "legacy sse binding: ") {
			t.Errorf("NewLegacySSE(%q): err = %v, want a legacy sse binding error", raw, err)
		}
	}
	for _, raw := range []string{"http://127.0.0.1:3000/mcp", "https://h/sse"} {
		if u, err := serverURL("x", raw); err != nil || u.String() != raw {
			t.Errorf("serverURL(%q) = %v, %v", raw, u, err)
		}
	}
}

// TestOptionsDefaults: without a client a binding gets its own, which
// follows no redirect and whose transport it owns (to close); an injected
// client is used as it is; without a logger, one that discards.
func TestOptionsDefaults(t *testing.T) {
	c, own := Options{}.client()
	if own == nil || c.Transport != own.(http.RoundTripper) {
		t.Fatalf("own client: transport %T, own %T", c.Transport, own)
	}
	if err := c.CheckRedirect(nil, nil); !errors.Is(err, http.ErrUseLastResponse) {
		t.Fatalf("own client follows redirects: %v", err)
	}
	injected := &http.Client{}
	if c, own := (Options{HTTPClient: injected}).client(); c != injected || own != nil {
		t.Fatalf("injected client: %p (want %p), own %v", c, injected, own)
	}
	if (Options{}).logger() == nil {
		t.Fatal("no logger")
	}
}
