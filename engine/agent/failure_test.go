package agent

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
)

const openAPIPath = "../../../shared/wire/tunnel-openapi.json"

var (
	schemaOnce sync.Once
	schema     *jsonschema.Schema
	schemaErr  error
)

// failureSchema compiles x-tunnel-failure-schema from the OpenAPI contract.
func failureSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	schemaOnce.Do(func() {
		raw, err := os.ReadFile(openAPIPath)
		if err != nil {
			schemaErr = err
			return
		}
		var doc struct {
			Components struct {
				Schemas map[string]struct {
					Properties map[string]json.RawMessage `json:"properties"`
				} `json:"schemas"`
			} `json:"components"`
		}
		if err := json.Unmarshal(raw, &doc); err != nil {
			schemaErr = err
			return
		}
		var respJSON struct {
			Schema json.RawMessage `json:"x-tunnel-failure-schema"`
		}
		if err := json.Unmarshal(doc.Components.Schemas["TunnelResponsePayload"].Properties["resp_json"], &respJSON); err != nil {
			schemaErr = err
			return
		}
		s, err := jsonschema.UnmarshalJSON(strings.NewReader(string(respJSON.Schema)))
		if err != nil {
			schemaErr = err
			return
		}
		c := jsonschema.NewCompiler()
		if err := c.AddResource("failure.json", s); err != nil {
			schemaErr = err
			return
		}
		schema, schemaErr = c.Compile("failure.json")
	})
	if schemaErr != nil {
		if os.IsNotExist(schemaErr) {
			t.Skipf("x-tunnel-failure-schema unavailable: %s not found (CI has it)", openAPIPath)
		}
		t.Fatalf("compile failure schema: %v", schemaErr)
	}
	return schema
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

// oauthBinding also serves oauth_metadata.
type oauthBinding struct {
	fakeBinding
	body string
}

func (b *oauthBinding) OAuthMetadata(ctx context.Context, h http.Header) (*binding.Reply, error) {
	if h.Get("X-Fail") != "" {
		return nil, errors.New("boom")
	}
	return &binding.Reply{Status: 200, Body: json.RawMessage(b.body), Header: http.Header{"Content-Type": {"application/json"}}}, nil
}

func TestOAuthMetadata(t *testing.T) {
	tests := []struct {
		name, body string
		wantJSON   string
		wantCode   int
		fail       bool
	}{
		{name: "object", body: `{"resource":"https://mcp.internal/mcp"}`, wantJSON: `{"resource":"https://mcp.internal/mcp"}`, wantCode: 200},
		{name: "not an object", body: `<html>`, wantJSON: `null`, wantCode: 200},
		{name: "binding error", fail: true, wantJSON: `null`, wantCode: 502},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			relay := newFakeRelay(t)
			startAgent(t, relay, &oauthBinding{body: tc.body}, nil)
			h := map[string][]string{}
			if tc.fail {
				h["X-Fail"] = []string{"1"}
			}
			relay.add(map[string]any{"request_id": "o1", "shard_token": "s", "command_type": CommandOAuthMetadata, "headers": h})
			p := relay.finalFor("o1")
			if p.resp.RespType != wire.RespJSONRPCResponse || p.resp.RespCode != tc.wantCode || string(p.resp.RespJSON) != tc.wantJSON {
				t.Errorf("got %+v", p.resp)
			}
		})
	}
	t.Run("unsupported binding skips", func(t *testing.T) {
		relay := newFakeRelay(t)
		startAgent(t, relay, &fakeBinding{}, nil)
		relay.add(map[string]any{"request_id": "o1", "shard_token": "s", "command_type": CommandOAuthMetadata, "headers": map[string]any{}},
			call("after", 1, "ping"))
		relay.finalFor("after")
		if n := relay.attemptsFor("o1"); n != 0 {
			t.Errorf("%d POSTs for a skipped command", n)
		}
	})
}
