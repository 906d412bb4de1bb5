package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
)

// barrierServer is a minimal JSON-only MCP server that holds every
// tools/call until n of them are waiting, then answers them all at once, so
// the agent has n final responses to deliver at the same moment.
func barrierServer(t *testing.T, n int) *httptest.Server {
	var mu sync.Mutex
	waiting := 0
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var m struct {
			ID     json.RawMessage `json:"id"`
			Method string          `json:"method"`
			Params struct {
				Arguments map[string]string `json:"arguments"`
			} `json:"params"`
		}
		if r.Method != http.MethodPost || json.NewDecoder(r.Body).Decode(&m) != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		if m.Method == "tools/call" {
			mu.Lock()
			waiting++
			if waiting == n {
				close(release)
			}
			mu.Unlock()
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"jsonrpc":"2.0","id":%s,"result":{"echo":%q}}`, m.ID, m.Params.Arguments["message"])
	}))
	t.Cleanup(srv.Close)
	return srv
}

// TestResponsesBatchedThroughRelay: final responses that finish together
// travel from the real agent to the real relay in batch POSTs (the
// response-batch extension), and each MCP client still gets its own answer.
func TestResponsesBatchedThroughRelay(t *testing.T) {
	const n = 10 // the agent's default mcp.max-concurrent-requests
	srv := barrierServer(t, n)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: srv.URL}}})
	te := h.tunnel(0)

	var wg sync.WaitGroup
	got := make([]string, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"message":"m-%d"}}}`, i, i)
			st, _, b := rawPost(t, http.MethodPost, te.mcpURL, mcpHeaders(te), []byte(body))
			got[i] = fmt.Sprintf("%d %s", st, b)
		}(i)
	}
	wg.Wait()
	for i, g := range got {
		want := fmt.Sprintf(`200 {"jsonrpc":"2.0","id":%d,"result":{"echo":"m-%d"}}`, i, i)
		if g != want {
			t.Errorf("call %d got %s, want %s", i, g, want)
		}
	}
	h.mu.Lock()
	r := h.relay
	h.mu.Unlock()
	rec := httptest.NewRecorder()
	r.AdminHandler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	batched := metricValue(rec.Body.String(), "sluice_relay_batched_responses_total")
	batches := metricValue(rec.Body.String(), `sluice_relay_agent_posts_total{kind="batch"`)
	t.Logf("%v responses in %v batch POSTs", batched, batches)
	if batches < 1 || batched < 2 {
		t.Fatalf("no response batches reached the relay (%v in %v)", batched, batches)
	}
}

// metricValue returns the first sample whose line starts with prefix.
func metricValue(page, prefix string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if strings.HasPrefix(line, prefix) {
			var v float64
			fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v)
			return v
		}
	}
	return -1
}
