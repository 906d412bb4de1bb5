package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/enginetest"
	"github.com/sluicemcp/sluice/engine/wire"
)

const (
	testTunnel = "tunnel_0123456789abcdef0123456789abcdef"
	testKey    = "sk-sluice-TestKey_123"
)

// posted is one response POST the fake relay received.
type posted struct {
	resp   wire.Response
	raw    []byte
	header http.Header
	at     time.Time
}

// fakeRelay serves the poll and response endpoints of WIRE.md on 127.0.0.1.
type fakeRelay struct {
	t   testing.TB
	srv *httptest.Server

	mu       sync.Mutex
	queue    []json.RawMessage // raw command objects, handed out in order
	limits   []int
	pollHdrs []http.Header
	posts    []posted
	attempts map[string]int // response POST attempts per request id
	wake     chan struct{}

	polls       atomic.Int64
	outstanding atomic.Int64
	maxOut      atomic.Int64
	delivered   atomic.Int64

	// pollHook, when set, may answer poll n (0-based) itself.
	pollHook func(n int, w http.ResponseWriter) bool
	// postHook, when set, may answer a response POST itself (attempt is
	// 1-based per request id).
	postHook func(r *wire.Response, attempt int, w http.ResponseWriter) bool
	// overdeliver hands out every queued command regardless of limit.
	overdeliver bool
	// metaStatus is the status of GET /v1/tunnels/{id} (0 = 200).
	metaStatus int

	// batch advertises and serves the response-batch extension.
	batch bool
	// streams advertises the get-stream extension.
	streams bool
	// caller advertises the caller extension.
	caller atomic.Bool
	// extra are more extensions to advertise.
	extra []string
	// batchHook, when set, may answer batch POST n (0-based) as a whole.
	batchHook func(n int, w http.ResponseWriter) bool
	batches   [][]string // request ids of each batch POST that reached the items
	batchPOST atomic.Int64
}

func newFakeRelay(t testing.TB) *fakeRelay {
	f := &fakeRelay{t: t, attempts: map[string]int{}, wake: make(chan struct{}, 1)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/tunnels/{id}", f.meta)
	mux.HandleFunc("GET /v1/tunnels/{id}/poll", f.poll)
	mux.HandleFunc("POST /v1/tunnels/{id}/response", f.response)
	mux.HandleFunc("POST /v1/tunnels/{id}/responses", f.responses)
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeRelay) meta(w http.ResponseWriter, r *http.Request) {
	f.advertise(w)
	if f.metaStatus != 0 {
		w.WriteHeader(f.metaStatus)
		return
	}
	_ = json.NewEncoder(w).Encode(wire.TunnelMetadata{ID: r.PathValue("id"), Name: "test"})
}

// add queues commands (any JSON-encodable values).
func (f *fakeRelay) add(cmds ...any) {
	f.mu.Lock()
	for _, c := range cmds {
		b, err := json.Marshal(c)
		if err != nil {
			f.t.Fatal(err)
		}
		f.queue = append(f.queue, b)
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fakeRelay) poll(w http.ResponseWriter, r *http.Request) {
	n := int(f.polls.Add(1) - 1)
	out := f.outstanding.Add(1)
	defer f.outstanding.Add(-1)
	for {
		m := f.maxOut.Load()
		if out <= m || f.maxOut.CompareAndSwap(m, out) {
			break
		}
	}
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	tms, _ := strconv.Atoi(r.URL.Query().Get("timeout_ms"))
	f.mu.Lock()
	f.limits = append(f.limits, limit)
	f.pollHdrs = append(f.pollHdrs, r.Header.Clone())
	f.mu.Unlock()
	f.advertise(w)
	if f.pollHook != nil && f.pollHook(n, w) {
		return
	}
	timer := time.NewTimer(time.Duration(tms) * time.Millisecond)
	defer timer.Stop()
	for {
		f.mu.Lock()
		k := len(f.queue)
		if !f.overdeliver {
			k = min(k, limit)
		}
		batch := f.queue[:k:k]
		f.queue = f.queue[k:]
		f.mu.Unlock()
		if k > 0 {
			f.delivered.Add(int64(k))
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]any{"commands": batch})
			return
		}
		select {
		case <-f.wake:
		case <-timer.C:
			w.WriteHeader(http.StatusNoContent)
			return
		case <-r.Context().Done():
			return
		}
	}
}

func (f *fakeRelay) response(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var resp wire.Response
	if err := json.Unmarshal(raw, &resp); err != nil {
		f.t.Errorf("response POST body is not JSON: %v: %s", err, raw)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	f.mu.Lock()
	f.attempts[resp.RequestID]++
	attempt := f.attempts[resp.RequestID]
	f.mu.Unlock()
	if f.postHook != nil && f.postHook(&resp, attempt, w) {
		return
	}
	f.mu.Lock()
	f.posts = append(f.posts, posted{resp: resp, raw: raw, header: r.Header.Clone(), at: time.Now()})
	f.mu.Unlock()
	_, _ = w.Write([]byte(`{"status":"ok"}`))
}

func (f *fakeRelay) advertise(w http.ResponseWriter) {
	var ext []string
	if f.batch {
		ext = append(ext, "other-ext", wire.ExtResponseBatch)
	}
	if f.streams {
		ext = append(ext, wire.ExtGetStream)
	}
	if f.caller.Load() {
		ext = append(ext, wire.ExtCaller)
	}
	ext = append(ext, f.extra...)
	if len(ext) > 0 {
		w.Header().Set(wire.HeaderExtensions, strings.Join(ext, ", "))
	}
}

// responses serves the response-batch extension: each item goes through
// response (postHook included) and its status is reported.
func (f *fakeRelay) responses(w http.ResponseWriter, r *http.Request) {
	n := int(f.batchPOST.Add(1) - 1)
	if !f.batch {
		http.NotFound(w, r)
		return
	}
	if f.batchHook != nil && f.batchHook(n, w) {
		return
	}
	raw, _ := io.ReadAll(r.Body)
	items, err := wire.DecodeResponseBatch(raw)
	if err != nil {
		f.t.Errorf("batch body: %v: %s", err, raw)
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	tokens := wire.SplitShardTokens(r.Header.Get(wire.HeaderShardToken))
	if len(tokens) != len(items) {
		f.t.Errorf("batch of %d with %d shard tokens", len(items), len(tokens))
	}
	statuses := make([]int, len(items))
	var ids []string
	for i, item := range items {
		var resp wire.Response
		_ = json.Unmarshal(item, &resp)
		ids = append(ids, resp.RequestID)
		if i < len(tokens) && tokens[i] != "shard-"+resp.RequestID {
			f.t.Errorf("item %d (%s) carries shard token %q", i, resp.RequestID, tokens[i])
		}
		one := httptest.NewRequest(http.MethodPost, "/response", bytes.NewReader(item))
		one.Header = r.Header.Clone()
		rec := httptest.NewRecorder()
		f.response(rec, one)
		statuses[i] = rec.Code
	}
	f.mu.Lock()
	f.batches = append(f.batches, ids)
	f.mu.Unlock()
	_, _ = w.Write(wire.AppendBatchStatuses(nil, statuses))
}

// postsFor returns the accepted POSTs for a request id, in arrival order.
func (f *fakeRelay) postsFor(id string) []posted {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []posted
	for _, p := range f.posts {
		if p.resp.RequestID == id {
			out = append(out, p)
		}
	}
	return out
}

func (f *fakeRelay) allPosts() []posted {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]posted(nil), f.posts...)
}

func (f *fakeRelay) attemptsFor(id string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.attempts[id]
}

// finalFor waits for the final POST of id.
func (f *fakeRelay) finalFor(id string) posted {
	f.t.Helper()
	var p posted
	enginetest.WaitFor(f.t, "final response for "+id, func() bool {
		for _, q := range f.postsFor(id) {
			if q.resp.Final() {
				p = q
				return true
			}
		}
		return false
	})
	return p
}

// cmd builds a jsonrpc command object.
func cmd(id, body string, extra ...func(map[string]any)) map[string]any {
	c := map[string]any{
		"request_id": id, "shard_token": "shard-" + id, "command_type": "jsonrpc", "channel": "main",
		"created_at": "2026-01-01T00:00:00Z", "headers": map[string][]string{"mcp-session-id": {"sess-1"}},
		"jsonrpc": json.RawMessage(body),
	}
	for _, e := range extra {
		e(c)
	}
	return c
}

func call(id string, rpcID int, method string) map[string]any {
	return cmd(id, `{"jsonrpc":"2.0","id":`+strconv.Itoa(rpcID)+`,"method":"`+method+`","params":{}}`)
}

func withCaller(v string) func(map[string]any) {
	return func(c map[string]any) { c["caller"] = v }
}

func withTimeout(v string) func(map[string]any) {
	return func(c map[string]any) { c["response_timeout"] = v }
}

// fakeBinding is a scripted binding.Binding.
type fakeBinding struct {
	do       func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error
	affinity bool

	mu      sync.Mutex
	reqs    []*binding.Request
	calls   atomic.Int64
	running atomic.Int64
	maxRun  atomic.Int64
}

func (b *fakeBinding) Do(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
	if isProbe(req) {
		return emit(&binding.Reply{Status: 200, Final: true, Body: json.RawMessage(`{"jsonrpc":"2.0","id":"sluice-readiness-probe","result":{}}`),
			Header: http.Header{"Content-Type": {"application/json"}}})
	}
	b.calls.Add(1)
	n := b.running.Add(1)
	defer b.running.Add(-1)
	for {
		m := b.maxRun.Load()
		if n <= m || b.maxRun.CompareAndSwap(m, n) {
			break
		}
	}
	b.mu.Lock()
	cp := *req
	cp.Header = req.Header.Clone()
	b.reqs = append(b.reqs, &cp)
	b.mu.Unlock()
	if b.do != nil {
		return b.do(ctx, req, emit)
	}
	return echo(req, emit)
}

func isProbe(req *binding.Request) bool {
	return string(req.ID) == `"sluice-readiness-probe"`
}

// echo answers like a minimal MCP server.
func echo(req *binding.Request, emit func(*binding.Reply) error) error {
	switch {
	case req.Kind == binding.KindSessionTermination:
		return emit(&binding.Reply{Status: 204, Final: true})
	case req.Notification:
		return emit(&binding.Reply{Status: 202, Final: true})
	}
	body := `{"jsonrpc":"2.0","id":` + string(req.ID) + `,"result":{"ok":true}}`
	return emit(&binding.Reply{Status: 200, Final: true, Body: json.RawMessage(body),
		Header: http.Header{"Content-Type": {"application/json"}, "X-Internal": {"secret"}}})
}

func (b *fakeBinding) Info() binding.Info { return binding.Info{ProcAffinity: b.affinity} }
func (b *fakeBinding) Close() error       { return nil }

func (b *fakeBinding) requests() []*binding.Request {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]*binding.Request(nil), b.reqs...)
}

// startAgent builds an agent against relay and runs it until the test ends.
func startAgent(t testing.TB, relay *fakeRelay, b binding.Binding, tweak func(*Config, *Options)) (*Agent, context.CancelFunc, <-chan struct{}) {
	t.Helper()
	cfg := Config{BaseURL: relay.srv.URL, TunnelID: testTunnel, APIKey: testKey, PollTimeout: 100 * time.Millisecond,
		ClientVersion: "1.2.3", ShutdownGrace: 5 * time.Second}
	opts := Options{Bindings: map[string]binding.Binding{"main": b}}
	if tweak != nil {
		tweak(&cfg, &opts)
	}
	a, err := New(cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		if err := a.Run(ctx); err != nil {
			t.Errorf("Run: %v", err)
		}
		close(done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			t.Error("agent did not stop")
		}
	})
	return a, cancel, done
}

var errBoom = errors.New("dial tcp 10.0.0.7:8080 http://secret.internal/mcp: connection refused")
