package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/relay"
)

// TestOAuthChallengeNonASCII: an MCP server's 401 challenge whose realm
// holds non-ASCII letters (ones whose lower case is longer in UTF-8) passes
// the relay with only resource_metadata rewritten, and the agent's discovery
// still follows the server's resource_metadata to a path no well-known
// candidate names. Both ends once lowercased the value to scan it and used
// those offsets on the original: the relay's handler and the agent panicked.
func TestOAuthChallengeNonASCII(t *testing.T) {
	realm := strings.Repeat("Ⱥ", 40)
	var srvURL string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/mcp":
			w.Header().Set("WWW-Authenticate", `Bearer realm="`+realm+`", resource_metadata="`+srvURL+`/meta/prm", error="invalid_token"`)
			w.WriteHeader(http.StatusUnauthorized)
		case r.Method == http.MethodGet && r.URL.Path == "/meta/prm":
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"resource": srvURL + "/mcp", "authorization_servers": []string{srvURL}})
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	srvURL = srv.URL

	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: srv.URL + "/mcp", authMode: relay.AuthOAuth}}})
	te := h.tunnel(0)
	prm := h.baseURL + "/.well-known/oauth-protected-resource/v1/mcp/" + te.id

	st, hdr, body := rawPost(t, http.MethodPost, te.mcpURL, map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"},
		[]byte(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	want := `Bearer realm="` + realm + `", resource_metadata="` + prm + `", error="invalid_token"`
	if got := hdr.Get("WWW-Authenticate"); st != http.StatusUnauthorized || got != want {
		t.Fatalf("POST without a token: %d %q %s\nwant 401 %q", st, got, body, want)
	}

	st, _, body = rawPost(t, http.MethodGet, prm, nil, nil)
	var doc struct {
		Resource string   `json:"resource"`
		AS       []string `json:"authorization_servers"`
	}
	if err := json.Unmarshal(body, &doc); st != http.StatusOK || err != nil || doc.Resource != te.mcpURL || len(doc.AS) != 1 || doc.AS[0] != srv.URL {
		t.Fatalf("metadata through the relay: %d %s (%v), want the server's /meta/prm with resource %s", st, body, err, te.mcpURL)
	}
}
