package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// failureSchema compiles x-tunnel-failure-schema from the published
// contract (a skip without it, a failure under CI).
func failureSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	return wiretest.Load(t).Schema("/components/schemas/TunnelResponsePayload/properties/resp_json/x-tunnel-failure-schema")
}

// checkFailure validates a posted -32603 tunnel failure and returns it.
func checkFailure(t *testing.T, p posted) wire.TunnelFailure {
	t.Helper()
	var env struct {
		JSONRPC string          `json:"jsonrpc"`
		ID      json.RawMessage `json:"id"`
		Error   struct {
			Code    int    `json:"code"`
			Message string `json:"message"`
			Data    struct {
				TunnelFailure json.RawMessage `json:"tunnel_failure"`
			} `json:"data"`
		} `json:"error"`
	}
	if err := json.Unmarshal(p.resp.RespJSON, &env); err != nil {
		t.Fatalf("failure body: %v: %s", err, p.resp.RespJSON)
	}
	if env.JSONRPC != "2.0" || env.Error.Code != -32603 {
		t.Errorf("failure envelope = %s", p.resp.RespJSON)
	}
	inst, err := jsonschema.UnmarshalJSON(strings.NewReader(string(env.Error.Data.TunnelFailure)))
	if err != nil {
		t.Fatalf("tunnel_failure: %v", err)
	}
	if err := failureSchema(t).Validate(inst); err != nil {
		t.Errorf("tunnel_failure %s violates the schema: %v", env.Error.Data.TunnelFailure, err)
	}
	var f wire.TunnelFailure
	_ = json.Unmarshal(env.Error.Data.TunnelFailure, &f)
	return f
}

func intp(i int) *int { return &i }

func TestTunnelFailureSynthesis(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantCode   int
		wantSource string
		wantStatus *int
		wantRecv   bool
	}{
		{name: "target http 500", err: &binding.Error{Source: wire.SourceTargetHTTP, Kind: "http_status", UpstreamStatus: 500, Err: errBoom},
			wantCode: 500, wantSource: wire.SourceTargetHTTP, wantStatus: intp(500), wantRecv: true},
		{name: "connect refused", err: &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused", Err: errBoom},
			wantCode: 502, wantSource: wire.SourceConnect},
		{name: "transport closed", err: &binding.Error{Source: wire.SourceTransportClosed, Kind: "eof", Err: errBoom},
			wantCode: 502, wantSource: wire.SourceTransportClosed},
		{name: "protocol", err: &binding.Error{Source: wire.SourceProtocol, Kind: "malformed_json", Err: errBoom},
			wantCode: 502, wantSource: wire.SourceProtocol, wantRecv: true},
		{name: "status outside 400..599", err: &binding.Error{Source: wire.SourceTargetHTTP, UpstreamStatus: 302, Err: errBoom},
			wantCode: 502, wantSource: wire.SourceProtocol, wantRecv: true},
		{name: "target http without status", err: &binding.Error{Source: wire.SourceTargetHTTP, Err: errBoom},
			wantCode: 502, wantSource: wire.SourceProtocol, wantRecv: true},
		{name: "plain error", err: errBoom, wantCode: 502, wantSource: wire.SourceClientInternal},
	}
	relay := newFakeRelay(t)
	var mu sync.Mutex
	errs := map[string]error{}
	b := &fakeBinding{do: func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		mu.Lock()
		defer mu.Unlock()
		return errs[req.Header.Get("X-Case")]
	}}
	startAgent(t, relay, b, nil)
	for i, tc := range tests {
		mu.Lock()
		errs[tc.name] = tc.err
		mu.Unlock()
		relay.add(cmd(tc.name, `{"jsonrpc":"2.0","id":"x`+itoa(i)+`","method":"tools/call"}`, func(c map[string]any) {
			c["headers"] = map[string][]string{"x-case": {tc.name}}
		}))
	}
	for i, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := relay.finalFor(tc.name)
			f := checkFailure(t, p)
			if p.resp.RespCode != tc.wantCode || p.resp.RespType != wire.RespJSONRPCResponse {
				t.Errorf("resp_code=%d type=%s, want %d", p.resp.RespCode, p.resp.RespType, tc.wantCode)
			}
			if f.Source != tc.wantSource || f.UpstreamResponseReceived != tc.wantRecv || f.Version != 1 {
				t.Errorf("failure = %+v", f)
			}
			if (f.UpstreamStatus == nil) != (tc.wantStatus == nil) || (f.UpstreamStatus != nil && *f.UpstreamStatus != *tc.wantStatus) {
				t.Errorf("upstream_status = %v", f.UpstreamStatus)
			}
			if !strings.Contains(string(p.resp.RespJSON), `"id":"x`+itoa(i)+`"`) {
				t.Errorf("id not preserved: %s", p.resp.RespJSON)
			}
			for _, leak := range []string{"secret.internal", "10.0.0.7", "dial tcp", "http://"} {
				if strings.Contains(string(p.resp.RespJSON), leak) {
					t.Errorf("failure leaks %q: %s", leak, p.resp.RespJSON)
				}
			}
		})
	}
}

// oauthBinding also serves oauth_discovery.
type oauthBinding struct {
	fakeBinding
	body   string
	status int
}

func (b *oauthBinding) OAuthDiscovery(ctx context.Context, h http.Header) (*binding.Reply, error) {
	if h.Get("X-Fail") != "" {
		return nil, &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused", Err: errors.New("dial tcp 10.0.0.7:443: refused")}
	}
	st := b.status
	if st == 0 {
		st = 200
	}
	return &binding.Reply{Status: st, Body: json.RawMessage(b.body),
		Header: http.Header{"Content-Type": {"application/json"}, "Cache-Control": {"max-age=60"}, "X-Upstream": {"kept"}}}, nil
}

// TestOAuthDiscovery: an oauth_discovery command (OpenAI's agent and its mock
// of the hosted service use it) is answered with an oauth_discovery_response
// carrying the metadata fetch's status, document and unfiltered headers.
func TestOAuthDiscovery(t *testing.T) {
	tests := []struct {
		name, body string
		status     int
		wantJSON   string
		wantCode   int
		fail       bool
		wantHeader bool
	}{
		{name: "object", body: `{"resource":"https://mcp.internal/mcp"}`, wantJSON: `{"resource":"https://mcp.internal/mcp"}`, wantCode: 200, wantHeader: true},
		{name: "not an object", body: `<html>`, wantJSON: `null`, wantCode: 200, wantHeader: true},
		{name: "upstream 404", body: `not found`, status: 404, wantJSON: `null`, wantCode: 404, wantHeader: true},
		{name: "binding error", fail: true, wantJSON: `null`, wantCode: 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			startAgent(t, relay, &oauthBinding{body: tc.body, status: tc.status}, nil)
			h := map[string][]string{}
			if tc.fail {
				h["X-Fail"] = []string{"1"}
			}
			// Only the common fields, as the hosted service sends it.
			relay.add(map[string]any{"request_id": "o1", "shard_token": "s", "command_type": wire.CommandOAuthDiscovery,
				"channel": "main", "created_at": "2026-12-04T08:00:00Z", "headers": h})
			p := relay.finalFor("o1")
			if p.resp.RespType != wire.RespOAuthDiscovery || p.resp.RespCode != tc.wantCode {
				t.Fatalf("got %+v", p.resp)
			}
			var raw map[string]json.RawMessage
			if err := json.Unmarshal(p.raw, &raw); err != nil {
				t.Fatal(err)
			}
			if got := string(raw["resp_json"]); got != tc.wantJSON {
				t.Errorf("resp_json = %s, want %s", got, tc.wantJSON)
			}
			if tc.wantHeader {
				// Not filtered like MCP response headers.
				if got := p.resp.RespHeaders["X-Upstream"]; len(got) != 1 || got[0] != "kept" {
					t.Errorf("resp_headers = %v, want the fetch's headers unfiltered", p.resp.RespHeaders)
				}
			}
			if strings.Contains(string(p.raw), "10.0.0.7") {
				t.Errorf("failure leaks the upstream address: %s", p.raw)
			}
		})
	}
	t.Run("a binding without metadata answers 404 at once", func(t *testing.T) {
		relay := newFakeRelay(t)
		startAgent(t, relay, &fakeBinding{}, nil)
		relay.add(map[string]any{"request_id": "o1", "shard_token": "s", "command_type": wire.CommandOAuthDiscovery, "headers": map[string]any{}})
		p := relay.finalFor("o1")
		if p.resp.RespType != wire.RespOAuthDiscovery || p.resp.RespCode != 404 {
			t.Errorf("got %+v", p.resp)
		}
	})
}

// TestAcksCarryNoPayload: notify_ack and session_termination_response bodies
// omit resp_json and resp_headers (OpenAI's mock service rejects an ack of
// notifications/initialized with "resp_json": null).
func TestAcksCarryNoPayload(t *testing.T) {
	relay := newFakeRelay(t)
	startAgent(t, relay, &fakeBinding{}, nil)
	relay.add(cmd("n1", `{"jsonrpc":"2.0","method":"notifications/initialized"}`),
		map[string]any{"request_id": "d1", "shard_token": "s", "command_type": wire.CommandSessionTermination,
			"headers": map[string][]string{"Mcp-Session-Id": {"sess-1"}}})
	for id, typ := range map[string]string{"n1": wire.RespNotifyAck, "d1": wire.RespSessionTermination} {
		p := relay.finalFor(id)
		if p.resp.RespType != typ {
			t.Errorf("%s: resp_type %q, want %q", id, p.resp.RespType, typ)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal(p.raw, &raw); err != nil {
			t.Fatal(err)
		}
		for _, k := range []string{"resp_json", "resp_headers"} {
			if v, ok := raw[k]; ok {
				t.Errorf("%s: %s present (%s) in %s", id, k, v, p.raw)
			}
		}
		if _, ok := raw["resp_code"]; !ok {
			t.Errorf("%s: resp_code missing: %s", id, p.raw)
		}
	}
}
