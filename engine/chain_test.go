package engine

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeStage is a scripted Stage that records every call in a shared log.
type fakeStage struct {
	name    string
	hooks   map[Hook]bool // nil = all
	methods map[string]bool
	handle  func(m *Message) (Result, error)
	log     *[]string
	mu      *sync.Mutex
	opens   atomic.Int64
	closes  atomic.Int64
	closed  atomic.Bool
}

func (s *fakeStage) Name() string { return s.name }
func (s *fakeStage) Wants(h Hook, method string) bool {
	if s.hooks != nil && !s.hooks[h] {
		return false
	}
	return s.methods == nil || s.methods[method]
}
func (s *fakeStage) Open(ctx context.Context) (Filter, error) {
	s.opens.Add(1)
	return &fakeFilter{s: s}, nil
}
func (s *fakeStage) Close() error { s.closed.Store(true); return nil }

type fakeFilter struct{ s *fakeStage }

func (f *fakeFilter) Handle(ctx context.Context, m *Message) (Result, error) {
	if f.s.closed.Load() {
		panic("stage used after Close")
	}
	if f.s.log != nil {
		f.s.mu.Lock()
		*f.s.log = append(*f.s.log, f.s.name+":"+m.Hook.String())
		f.s.mu.Unlock()
	}
	if f.s.handle == nil {
		return Result{}, nil
	}
	return f.s.handle(m)
}
func (f *fakeFilter) Close() { f.s.closes.Add(1) }

func newStages(log *[]string, names ...string) []*fakeStage {
	mu := &sync.Mutex{}
	out := make([]*fakeStage, len(names))
	for i, n := range names {
		out[i] = &fakeStage{name: n, log: log, mu: mu}
	}
	return out
}

func chainOf(stages ...*fakeStage) *Chain {
	cs := make([]ChainStage, len(stages))
	for i, s := range stages {
		cs[i] = ChainStage{Stage: s}
	}
	return NewChain(cs, ChainOptions{})
}

func req(body string) *Message {
	p, _ := PeekMessage([]byte(body))
	return &Message{Hook: HookRequest, Method: p.Method, Body: json.RawMessage(body), Notification: p.ID == nil, Header: http.Header{}}
}

func resp(body string, notification bool) *Message {
	return &Message{Hook: HookResponse, Status: 200, Body: json.RawMessage(body), Notification: notification}
}

func TestChainDirection(t *testing.T) {
	var log []string
	s := newStages(&log, "a", "b", "c")
	x := chainOf(s...).Begin()
	defer x.Close()
	if o := x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)); o.Action != Continue {
		t.Fatalf("request outcome %v", o.Action)
	}
	x.Response(context.Background(), resp(`{"jsonrpc":"2.0","method":"notifications/progress"}`, true))
	x.Response(context.Background(), resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false))
	want := "a:request b:request c:request c:response b:response a:response c:response b:response a:response"
	if got := strings.Join(log, " "); got != want {
		t.Errorf("order:\n got %s\nwant %s", got, want)
	}
	x.Close()
	for _, st := range s {
		if st.opens.Load() != 1 || st.closes.Load() != 1 {
			t.Errorf("%s: opened %d closed %d, want 1/1", st.name, st.opens.Load(), st.closes.Load())
		}
	}
}

func TestChainRespondGoesUpThroughEarlierStagesOnly(t *testing.T) {
	var log []string
	s := newStages(&log, "a", "b", "c")
	s[1].handle = func(m *Message) (Result, error) {
		if m.Hook == HookRequest {
			return Result{Action: Respond, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"cached":true}}`)}, nil
		}
		return Result{}, nil
	}
	s[0].handle = func(m *Message) (Result, error) {
		if m.Hook == HookResponse {
			return Result{Action: Replace, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"result":{"seen_by_a":true}}`)}, nil
		}
		return Result{}, nil
	}
	x := chainOf(s...).Begin()
	defer x.Close()
	o := x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":1,"method":"tools/list"}`))
	if o.Action != Respond || o.Stage != "b" || o.Status != 200 {
		t.Fatalf("outcome %+v", o)
	}
	m := resp(string(o.Body), false)
	r := x.Response(context.Background(), m)
	if !bytes.Contains(r.Body, []byte("seen_by_a")) {
		t.Errorf("response did not pass stage a: %s", r.Body)
	}
	if got := strings.Join(log, " "); got != "a:request b:request a:response" {
		t.Errorf("order: %s", got)
	}
}

func TestChainReject(t *testing.T) {
	s := newStages(nil, "policy", "never")
	s[0].handle = func(m *Message) (Result, error) {
		return Result{Action: Reject, Status: 403, Error: &RPCError{Code: -32001, Message: "tool not allowed"}}, nil
	}
	x := chainOf(s...).Begin()
	defer x.Close()
	o := x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":"abc","method":"tools/call"}`))
	if o.Action != Reject || o.Status != 403 || o.Stage != "policy" {
		t.Fatalf("outcome %+v", o)
	}
	want := `{"jsonrpc":"2.0","id":"abc","error":{"code":-32001,"message":"tool not allowed"}}`
	if string(o.Body) != want {
		t.Errorf("body %s, want %s", o.Body, want)
	}
	if s[1].opens.Load() != 0 {
		t.Error("a stage after the rejecting one was opened")
	}
}

func TestChainReplaceAndDrop(t *testing.T) {
	s := newStages(nil, "a", "b")
	s[1].handle = func(m *Message) (Result, error) {
		if m.Hook == HookRequest {
			h := m.Header.Clone()
			h.Set("X-Team", "infra")
			return Result{Action: Replace, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"x":1}}`), Header: h}, nil
		}
		if m.Notification {
			return Result{Action: Drop}, nil
		}
		return Result{}, nil
	}
	x := chainOf(s...).Begin()
	defer x.Close()
	m := req(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)
	o := x.Request(context.Background(), m)
	if o.Action != Continue || !bytes.Contains(o.Body, []byte(`"x":1`)) || o.Header.Get("X-Team") != "infra" {
		t.Fatalf("replace not applied: %+v", o)
	}
	if o := x.Response(context.Background(), resp(`{"jsonrpc":"2.0","method":"notifications/message"}`, true)); o.Action != Drop || o.Stage != "b" {
		t.Errorf("notification not dropped: %+v", o)
	}
	// Drop of a final response is a plugin failure: fail_closed turns it into -32603.
	s[1].handle = func(m *Message) (Result, error) { return Result{Action: Drop}, nil }
	o = x.Response(context.Background(), resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false))
	if o.Action != Reject || !o.Failed || !bytes.Contains(o.Body, []byte(`"code":-32603`)) || !bytes.Contains(o.Body, []byte(`"id":1`)) {
		t.Errorf("drop of a final response: %+v %s", o, o.Body)
	}
}

func TestChainOnError(t *testing.T) {
	boom := func(m *Message) (Result, error) { return Result{}, fmt.Errorf("trap: %w", ErrPluginFailure) }
	tests := []struct {
		name    string
		policy  OnError
		msg     *Message
		hook    Hook
		action  Action
		code    bool // a -32603 body
		visited bool // the stage after it ran
	}{
		{"closed request", FailClosed, req(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`), HookRequest, Reject, true, false},
		{"open request", FailOpen, req(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`), HookRequest, Continue, false, true},
		{"closed notification request", FailClosed, req(`{"jsonrpc":"2.0","method":"notifications/initialized"}`), HookRequest, Drop, false, false},
		{"closed final response", FailClosed, resp(`{"jsonrpc":"2.0","id":7,"result":{}}`, false), HookResponse, Reject, true, true},
		{"closed notification response", FailClosed, resp(`{"jsonrpc":"2.0","method":"notifications/progress"}`, true), HookResponse, Drop, false, true},
		{"open final response", FailOpen, resp(`{"jsonrpc":"2.0","id":7,"result":{}}`, false), HookResponse, Continue, false, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var log []string
			s := newStages(&log, "first", "bad", "last")
			s[1].handle = func(m *Message) (Result, error) {
				if m.Hook != tt.hook {
					return Result{}, nil
				}
				return boom(m)
			}
			c := NewChain([]ChainStage{{Stage: s[0]}, {Stage: s[1], OnError: tt.policy}, {Stage: s[2]}}, ChainOptions{})
			x := c.Begin()
			defer x.Close()
			var o Outcome
			if tt.hook == HookRequest {
				o = x.Request(context.Background(), tt.msg)
			} else {
				x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":7,"method":"tools/call"}`))
				log = nil
				o = x.Response(context.Background(), tt.msg)
			}
			if o.Action != tt.action {
				t.Fatalf("action %v, want %v (%+v)", o.Action, tt.action, o)
			}
			if tt.code != bytes.Contains(o.Body, []byte(`"code":-32603`)) {
				t.Errorf("body %s", o.Body)
			}
			if tt.code && !bytes.Contains(o.Body, []byte(`"id":7`)) {
				t.Errorf("synthesized error lost the id: %s", o.Body)
			}
			if tt.policy == FailClosed && !o.Failed {
				t.Error("outcome not marked as a failure")
			}
			ranLast := strings.Contains(strings.Join(log, " "), "last:")
			if ranLast != tt.visited {
				t.Errorf("last stage ran = %v, want %v (%v)", ranLast, tt.visited, log)
			}
		})
	}
}

func TestChainShadow(t *testing.T) {
	s := newStages(nil, "shadowed")
	s[0].handle = func(m *Message) (Result, error) {
		return Result{Action: Reject, Error: &RPCError{Code: -1, Message: "no"}}, nil
	}
	var obs countingObserver
	c := NewChain([]ChainStage{{Stage: s[0], Shadow: true}}, ChainOptions{Observer: &obs})
	x := c.Begin()
	defer x.Close()
	if o := x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)); o.Action != Continue {
		t.Fatalf("shadow verdict applied: %+v", o)
	}
	if obs.calls.Load() != 1 || obs.shadow.Load() != 1 {
		t.Errorf("shadow call not observed: %d/%d", obs.calls.Load(), obs.shadow.Load())
	}
}

type countingObserver struct{ calls, failed, shadow atomic.Int64 }

func (o *countingObserver) StageCalled(stage string, h Hook, a Action, failed, shadow bool, d time.Duration) {
	o.calls.Add(1)
	if failed {
		o.failed.Add(1)
	}
	if shadow {
		o.shadow.Add(1)
	}
}

func TestChainSkipsUnwantedStages(t *testing.T) {
	s := newStages(nil, "tools-only", "responses-only")
	s[0].methods = map[string]bool{"tools/call": true}
	s[1].hooks = map[Hook]bool{HookResponse: true}
	x := chainOf(s...).Begin()
	x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	x.Response(context.Background(), resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false))
	x.Close()
	if s[0].opens.Load() != 0 {
		t.Error("a stage that wants only tools/call was opened for ping")
	}
	if s[1].opens.Load() != 1 {
		t.Error("response stage not opened once")
	}
}

func TestEmptyChain(t *testing.T) {
	x := NewChain(nil, ChainOptions{}).Begin()
	defer x.Close()
	m := req(`{"jsonrpc":"2.0","id":1,"method":"ping"}`)
	if o := x.Request(context.Background(), m); o.Action != Continue || string(o.Body) != string(m.Body) {
		t.Fatalf("%+v", o)
	}
	if o := x.Response(context.Background(), resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false)); o.Action != Continue {
		t.Fatalf("%+v", o)
	}
}

func TestErrorResponseAndPeek(t *testing.T) {
	for _, id := range []string{`0`, `"0"`, `12345678901234567890`, `"a\"b"`} {
		body := `{"jsonrpc":"2.0","id":` + id + `,"method":"tools/call","params":{"name":"echo"}}`
		p, err := PeekMessage([]byte(body))
		if err != nil || string(p.ID) != id || p.Method != "tools/call" || p.Tool != "echo" {
			t.Fatalf("Peek(%s) = %+v, %v", body, p, err)
		}
		e := ErrorResponse(p.ID, &RPCError{Code: -32603, Message: `say "no"`, Data: json.RawMessage(`{"k":1}`)})
		if !json.Valid(e) || !bytes.Contains(e, []byte(`"id":`+id+`,`)) {
			t.Errorf("ErrorResponse = %s", e)
		}
	}
	for _, bad := range []string{`[{"id":1}]`, ``, `nope`, `"x"`} {
		if _, err := PeekMessage([]byte(bad)); err == nil {
			t.Errorf("PeekMessage(%q) accepted", bad)
		}
	}
	if p, _ := PeekMessage([]byte(`{"jsonrpc":"2.0","id":null,"method":"x"}`)); p.ID != nil {
		t.Error("null id should read as absent")
	}
}

// TestPipelineSwapUnderLoad swaps chains while many exchanges run and checks
// that every exchange saw exactly one chain generation from start to end, that
// no stage was used after its chain closed (fakeFilter panics), and that old
// chains are closed once drained.
func TestPipelineSwapUnderLoad(t *testing.T) {
	gen := func(g int) (*Chain, []*fakeStage) {
		s := newStages(nil, "a", "b")
		for _, st := range s {
			st.handle = func(m *Message) (Result, error) {
				body := bytes.TrimSuffix(m.Body, []byte("}"))
				return Result{Action: Replace, Body: append(append([]byte{}, body...), []byte(fmt.Sprintf(`,"g%d":1}`, g))...)}, nil
			}
		}
		return chainOf(s...), s
	}
	c0, s0 := gen(0)
	p := NewPipeline(c0)
	var all [][]*fakeStage
	all = append(all, s0)
	var wg sync.WaitGroup
	var failures atomic.Int64
	var served atomic.Int64
	stop := make(chan struct{})
	for w := 0; w < 8; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				x := p.Begin()
				o := x.Request(context.Background(), req(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`))
				r := x.Response(context.Background(), resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false))
				x.Close()
				// Both stages of one generation, on both hooks.
				g := -1
				for k := 0; k < 100; k++ {
					if bytes.Count(o.Body, []byte(fmt.Sprintf(`"g%d"`, k))) == 2 {
						g = k
					}
				}
				if g < 0 || bytes.Count(r.Body, []byte(fmt.Sprintf(`"g%d"`, g))) != 2 || bytes.Count(o.Body, []byte(`"g`)) != 2 {
					failures.Add(1)
				}
				served.Add(1)
			}
		}()
	}
	for g := 1; g <= 20; g++ {
		c, s := gen(g)
		all = append(all, s)
		if err := p.Swap(c, time.Second); err != nil {
			t.Fatal(err)
		}
		time.Sleep(2 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d exchanges saw a mixed or half-built chain", failures.Load(), served.Load())
	}
	for g, s := range all[:len(all)-1] {
		if !s[0].closed.Load() {
			t.Errorf("generation %d not closed after swap", g)
		}
	}
	if all[len(all)-1][0].closed.Load() {
		t.Error("live chain closed")
	}
	t.Logf("%d exchanges across 21 generations", served.Load())
}

func TestPipelineSwapWaitsForDrain(t *testing.T) {
	c0, s0 := chainOf(newStages(nil, "old")...), []*fakeStage(nil)
	_ = s0
	p := NewPipeline(c0)
	x := p.Begin()
	done := make(chan error)
	go func() { done <- p.Swap(NewChain(nil, ChainOptions{}), 5*time.Second) }()
	select {
	case <-done:
		t.Fatal("Swap returned while an exchange on the old chain was open")
	case <-time.After(50 * time.Millisecond):
	}
	x.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	_ = errors.New
}

func BenchmarkEmptyChainExchange(b *testing.B) {
	p := NewPipeline(nil)
	m := req(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`)
	r := resp(`{"jsonrpc":"2.0","id":1,"result":{}}`, false)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		x := p.Begin()
		x.Request(context.Background(), m)
		x.Response(context.Background(), r)
		x.Close()
	}
}

func TestPeekMessageCases(t *testing.T) {
	tests := []struct {
		in        string
		id        string
		method    string
		tool      string
		hasResult bool
		err       bool
	}{
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"name":"not me"}}}`, `1`, "tools/call", "echo", false, false},
		{`{"jsonrpc":"2.0","method":"notifications/initialized"}`, ``, "notifications/initialized", "", false, false},
		{`{"jsonrpc":"2.0","method":"sum","params":[1,2]}`, ``, "sum", "", false, false},
		{`{"jsonrpc":"2.0","id":"x","result":null}`, `"x"`, "", "", true, false},
		{`{"jsonrpc":"2.0","id":2,"error":{"code":-1,"message":"m"}}`, `2`, "", "", true, false},
		{`{"jsonrpc":"2.0","id":null,"method":"x"}`, ``, "x", "", false, false},
		{`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"a\u00e9"}}`, `1`, "tools/call", "aé", false, false},
		{`{"jsonrpc":"2.0","id":1,"met\u0068od":"tools/list"}`, `1`, "tools/list", "", false, false},
		{`{"jsonrpc":"2.0","id":1,"method":5}`, ``, "", "", false, true},
		{`{"jsonrpc":"2.0","id":1,"method":"x"} trailing`, ``, "", "", false, true},
		{`{"jsonrpc":"2.0","id":1,"method":"x"`, ``, "", "", false, true},
		{`[{"id":1}]`, ``, "", "", false, true},
	}
	for _, tt := range tests {
		p, err := PeekMessage([]byte(tt.in))
		if tt.err {
			if err == nil {
				t.Errorf("PeekMessage(%s) accepted", tt.in)
			}
			continue
		}
		if err != nil || string(p.ID) != tt.id || p.Method != tt.method || p.Tool != tt.tool || p.HasResult != tt.hasResult {
			t.Errorf("PeekMessage(%s) = %+v, %v", tt.in, p, err)
		}
	}
}

func FuzzPeekMessage(f *testing.F) {
	f.Add([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo"}}`))
	f.Add([]byte(`{"id":"a","result":{}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		p, err := PeekMessage(b)
		if err != nil {
			return
		}
		// Whatever it accepts is one valid JSON object, and the id it found
		// is valid JSON taken from it.
		if !json.Valid(b) || bytes.TrimSpace(b)[0] != '{' {
			t.Fatalf("accepted %q", b)
		}
		if p.ID != nil && (!json.Valid(p.ID) || !bytes.Contains(b, p.ID)) {
			t.Fatalf("id %q from %q", p.ID, b)
		}
	})
}

func BenchmarkPeekMessage(b *testing.B) {
	msg := []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + strings.Repeat("x", 1024) + `"}}}`)
	b.SetBytes(int64(len(msg)))
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, err := PeekMessage(msg); err != nil {
			b.Fatal(err)
		}
	}
}

func TestReplaceKeepsRoutingHeaders(t *testing.T) {
	replaceWith := func(body string, setParam bool) *fakeStage {
		s := newStages(nil, "edit")[0]
		s.handle = func(m *Message) (Result, error) {
			h := m.Header.Clone()
			if setParam {
				h.Set("Mcp-Param-Region", "eu")
			}
			return Result{Action: Replace, Body: json.RawMessage(body), Header: h}, nil
		}
		return s
	}
	newReq := func(h http.Header) *Message {
		m := req(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"region":"us"}}}`)
		m.Header = h
		return m
	}
	t.Run("method and name recomputed", func(t *testing.T) {
		x := chainOf(replaceWith(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy_safe","arguments":{}}}`, false)).Begin()
		defer x.Close()
		o := x.Request(context.Background(), newReq(http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"deploy"}}))
		if o.Action != Continue || o.Header.Get("Mcp-Name") != "deploy_safe" || o.Header.Get("Mcp-Method") != "tools/call" {
			t.Fatalf("%+v", o)
		}
		if o.Changed != "edit" || o.Stage != "" {
			t.Fatalf("outcome names changed=%q stage=%q, want the editing stage as Changed only", o.Changed, o.Stage)
		}
	})
	t.Run("params not updated: refused", func(t *testing.T) {
		x := chainOf(replaceWith(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"region":"eu"}}}`, false)).Begin()
		defer x.Close()
		o := x.Request(context.Background(), newReq(http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"deploy"}, "Mcp-Param-Region": {"us"}}))
		if o.Action != Reject || !bytes.Contains(o.Body, []byte("Mcp-Param")) || !bytes.Contains(o.Body, []byte(`"id":1`)) {
			t.Fatalf("%+v %s", o, o.Body)
		}
	})
	t.Run("params updated by the plugin: passes", func(t *testing.T) {
		x := chainOf(replaceWith(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"deploy","arguments":{"region":"eu"}}}`, true)).Begin()
		defer x.Close()
		o := x.Request(context.Background(), newReq(http.Header{"Mcp-Method": {"tools/call"}, "Mcp-Name": {"deploy"}, "Mcp-Param-Region": {"us"}}))
		if o.Action != Continue || o.Header.Get("Mcp-Param-Region") != "eu" {
			t.Fatalf("%+v", o)
		}
	})
	t.Run("2025 traffic untouched", func(t *testing.T) {
		x := chainOf(replaceWith(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`, false)).Begin()
		defer x.Close()
		o := x.Request(context.Background(), newReq(http.Header{"Mcp-Session-Id": {"s"}}))
		if o.Action != Continue || o.Header.Get("Mcp-Name") != "" {
			t.Fatalf("%+v", o)
		}
	})
}

// FuzzValidObject holds ValidObject to encoding/json.
func FuzzValidObject(f *testing.F) {
	for _, s := range []string{`{}`, ` {"a":[1,2,{"b":null}]} `, `{"a":"\u00e9\n"}`, `[]`, `{"a":1,}`, `{"a":01}`, `{"a":"x` + "\x01" + `"}`, `{} {}`, `{"a":1e5,"b":-0.5}`, ``, `"s"`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		t2 := bytes.TrimLeft(b, " \t\r\n")
		want := len(t2) > 0 && t2[0] == '{' && json.Valid(b)
		if got := ValidObject(b); got != want {
			t.Fatalf("ValidObject(%q) = %v, json.Valid says %v", b, got, want)
		}
	})
}

// breakerStage is a fakeStage with a circuit breaker whose state the test
// sets.
type breakerStage struct {
	fakeStage
	open atomic.Bool
}

func (s *breakerStage) CircuitOpen() bool { return s.open.Load() }

// TestChainOpenCircuits: the chain lists the stages whose circuit is open,
// in request order, and a failure that says the circuit is open gets the
// stage's policy like any failure but is not logged call by call.
func TestChainOpenCircuits(t *testing.T) {
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	a := &breakerStage{fakeStage: fakeStage{name: "a"}}
	b := &fakeStage{name: "b"}
	c := &breakerStage{fakeStage: fakeStage{name: "c"}}
	ch := NewChain([]ChainStage{{Stage: a}, {Stage: b}, {Stage: c}}, ChainOptions{Logger: log})
	if got := ch.OpenCircuits(); got != nil {
		t.Fatalf("open circuits %v, want none", got)
	}
	c.open.Store(true)
	a.open.Store(true)
	if got := strings.Join(ch.OpenCircuits(), ","); got != "a,c" {
		t.Fatalf("open circuits %q, want a,c", got)
	}
	if (*Chain)(nil).OpenCircuits() != nil {
		t.Fatal("nil chain")
	}

	a.handle = func(*Message) (Result, error) {
		return Result{}, fmt.Errorf("plugin a: %w: %w", ErrPluginFailure, ErrCircuitOpen)
	}
	for range 5 {
		x := ch.Begin()
		out := x.Request(context.Background(), &Message{Hook: HookRequest, Method: "tools/call", Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)})
		x.Close()
		if out.Action != Reject || !out.Failed || out.Stage != "a" {
			t.Fatalf("outcome %+v, want fail_closed's reject", out)
		}
	}
	if strings.Contains(logs.String(), "plugin failed") {
		t.Fatalf("circuit-open failures logged one by one:\n%s", logs.String())
	}
	a.handle = func(*Message) (Result, error) { return Result{}, fmt.Errorf("trap: %w", ErrPluginFailure) }
	x := ch.Begin()
	x.Request(context.Background(), &Message{Hook: HookRequest, Method: "tools/call", Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"tools/call"}`)})
	x.Close()
	if !strings.Contains(logs.String(), "plugin failed") {
		t.Fatal("an ordinary failure was not logged")
	}
}
