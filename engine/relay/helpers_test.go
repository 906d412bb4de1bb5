package relay

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/wire"
)

const (
	tunA       = "tunnel_0123456789abcdef0123456789abcdef"
	tunB       = "tunnel_fedcba9876543210fedcba9876543210"
	runtimeA   = "rk-alpha"
	runtimeB   = "rk-bravo"
	clientKeyA = "ck-alice"
	clientKeyB = "ck-bob"
)

type harness struct {
	t   testing.TB
	r   *Relay
	srv *httptest.Server
	url string
}

func baseConfig(pub string) Config {
	return Config{
		PublicURL: pub,
		Tunnels: []Tunnel{
			{ID: tunA, Name: "alpha", Description: "first", RuntimeKey: runtimeA,
				ClientKeys: []ClientKey{{Name: "alice", Key: clientKeyA}}, ResponseTimeout: 10 * time.Second},
			{ID: tunB, Name: "bravo", RuntimeKey: runtimeB,
				ClientKeys: []ClientKey{{Name: "bob", Key: clientKeyB}}, ResponseTimeout: 10 * time.Second},
		},
	}
}

func newHarness(t testing.TB, mutate func(*Config), opts Options) *harness {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg := baseConfig("http://" + ln.Addr().String())
	if mutate != nil {
		mutate(&cfg)
	}
	r, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(r.Handler())
	r.ConfigureServer(srv.Config)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(func() { r.Close(); srv.Close() })
	return &harness{t: t, r: r, srv: srv, url: srv.URL}
}

func (h *harness) do(method, path string, body []byte, hdr map[string]string) *http.Response {
	h.t.Helper()
	req, err := http.NewRequest(method, h.url+path, bytes.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	return resp
}

// poll polls once as an agent.
func (h *harness) poll(tunnel, key string, limit int, timeout time.Duration, extra map[string]string) (int, []wire.Command) {
	h.t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + key}
	for k, v := range extra {
		hdr[k] = v
	}
	resp := h.do("GET", "/v1/tunnels/"+tunnel+"/poll?limit="+strconv.Itoa(limit)+"&timeout_ms="+strconv.FormatInt(timeout.Milliseconds(), 10), nil, hdr)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 {
		return resp.StatusCode, nil
	}
	cmds, bad, err := wire.DecodePoll(b)
	if err != nil || len(bad) > 0 {
		h.t.Fatalf("decode poll %s: %v %v", b, err, bad)
	}
	return 200, cmds
}

// connect makes the tunnel's agent count as connected.
func (h *harness) connect(tunnel, key string) {
	h.t.Helper()
	if st, _ := h.poll(tunnel, key, 1, time.Millisecond, nil); st != 204 {
		h.t.Fatalf("connect poll: %d", st)
	}
}

// next polls until one command arrives (bounded).
func (h *harness) next(tunnel, key string) wire.Command {
	h.t.Helper()
	return h.nextWith(tunnel, key, nil)
}

// nextWith is next with extra poll headers.
func (h *harness) nextWith(tunnel, key string, extra map[string]string) wire.Command {
	h.t.Helper()
	var c wire.Command
	if err := json.Unmarshal(h.nextRawWith(tunnel, key, extra), &c); err != nil {
		h.t.Fatal(err)
	}
	if c.Channel == "" {
		c.Channel = wire.DefaultChannel
	}
	return c
}

// nextRaw polls until one command arrives (bounded) and returns it as the
// relay wrote it.
func (h *harness) nextRaw(tunnel, key string) json.RawMessage {
	h.t.Helper()
	return h.nextRawWith(tunnel, key, nil)
}

// nextRawWith is nextRaw with extra poll headers.
func (h *harness) nextRawWith(tunnel, key string, extra map[string]string) json.RawMessage {
	h.t.Helper()
	hdr := map[string]string{"Authorization": "Bearer " + key}
	for k, v := range extra {
		hdr[k] = v
	}
	for range 50 {
		resp := h.do("GET", "/v1/tunnels/"+tunnel+"/poll?limit=1&timeout_ms=200", nil, hdr)
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == 200 {
			var body struct {
				Commands []json.RawMessage `json:"commands"`
			}
			if err := json.Unmarshal(b, &body); err != nil || len(body.Commands) != 1 {
				h.t.Fatalf("poll body %s: %v", b, err)
			}
			return body.Commands[0]
		}
		if resp.StatusCode != 204 {
			h.t.Fatalf("poll status %d", resp.StatusCode)
		}
	}
	h.t.Fatal("no command arrived")
	return nil
}

func (h *harness) respond(tunnel, key, token string, resp wire.Response) (int, string) {
	h.t.Helper()
	b, _ := json.Marshal(resp)
	r := h.do("POST", "/v1/tunnels/"+tunnel+"/response", b, map[string]string{
		"Authorization": "Bearer " + key, wire.HeaderShardToken: token, "Content-Type": "application/json",
	})
	defer r.Body.Close()
	return r.StatusCode, apiCode(r)
}

func apiCode(r *http.Response) string {
	b, _ := io.ReadAll(r.Body)
	var e wire.APIError
	if json.Unmarshal(b, &e) == nil && e.Error.Code != nil {
		return *e.Error.Code
	}
	return ""
}

// clientPost posts an MCP message asynchronously.
func (h *harness) clientPost(tunnel string, body string, hdr map[string]string) <-chan *http.Response {
	return h.client(context.Background(), "POST", tunnel, body,
		map[string]string{"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}, hdr)
}

// client sends an MCP client's request asynchronously: the client key, then
// defaults, then hdr (where "" removes a header).
func (h *harness) client(ctx context.Context, method, tunnel, body string, defaults, hdr map[string]string) <-chan *http.Response {
	ch := make(chan *http.Response, 1)
	all := map[string]string{"Authorization": "Bearer " + clientKeyA}
	for _, m := range []map[string]string{defaults, hdr} {
		for k, v := range m {
			if v == "" {
				delete(all, k)
				continue
			}
			all[k] = v
		}
	}
	go func() {
		req, _ := http.NewRequestWithContext(ctx, method, h.url+"/v1/mcp/"+tunnel, strings.NewReader(body))
		for k, v := range all {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			ch <- nil
			return
		}
		ch <- resp
	}()
	return ch
}

func wait[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting")
	}
	var z T
	return z
}

func readAll(t *testing.T, r *http.Response) string {
	t.Helper()
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// sseReader reads SSE events one at a time.
type sseReader struct{ br *bufio.Reader }

func (s *sseReader) next() (string, error) {
	var data []string
	for {
		line, err := s.br.ReadString('\n')
		if err != nil {
			return "", err
		}
		line = strings.TrimRight(line, "\r\n")
		switch {
		case line == "":
			if len(data) > 0 {
				return strings.Join(data, "\n"), nil
			}
		case strings.HasPrefix(line, "data: "):
			data = append(data, line[len("data: "):])
		}
	}
}

// fnStage is a test Stage calling fn for the hooks it wants.
type fnStage struct {
	name  string
	hooks map[engine.Hook]bool
	fn    func(m *engine.Message) engine.Result
}

func (s *fnStage) Name() string                                { return s.name }
func (s *fnStage) Wants(h engine.Hook, _ string) bool          { return s.hooks[h] }
func (s *fnStage) Open(context.Context) (engine.Filter, error) { return fnFilter{s}, nil }
func (s *fnStage) Close() error                                { return nil }

type fnFilter struct{ s *fnStage }

func (f fnFilter) Handle(_ context.Context, m *engine.Message) (engine.Result, error) {
	return f.s.fn(m), nil
}
func (f fnFilter) Close() {}

func pipelineOf(stages ...engine.Stage) *engine.Pipeline {
	var cs []engine.ChainStage
	for _, s := range stages {
		cs = append(cs, engine.ChainStage{Stage: s})
	}
	return engine.NewPipeline(engine.NewChain(cs, engine.ChainOptions{}))
}
