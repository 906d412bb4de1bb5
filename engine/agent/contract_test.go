package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// TestEveryBodyMatchesContract runs one command of every kind through a real
// agent and checks each response POST body it sends against the published
// TunnelResponsePayload (oauth_discovery_response against the contract
// extended by that one name, which it does not list yet), and the headers it
// sends against the published header rules. That includes the bodies of the
// get-stream extension (the opening, a message with its event id, an id
// alone, heartbeats, the end, a refusal, a failure to reach the server):
// all ordinary response payloads.
func TestEveryBodyMatchesContract(t *testing.T) {
	c := wiretest.Load(t)
	published := c.Schema("/components/schemas/TunnelResponsePayload")
	extended := c.Extended("/components/schemas/TunnelResponsePayload")

	b := &oauthBinding{body: `{"resource":"http://10.0.0.5/mcp"}`}
	b.do = func(ctx context.Context, req *binding.Request, emit func(*binding.Reply) error) error {
		body := string(req.Body)
		switch {
		case strings.Contains(body, `"progress"`):
			if err := emit(&binding.Reply{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":1,"progress":1}}`)}); err != nil {
				return err
			}
		case strings.Contains(body, `"gone"`):
			return emit(&binding.Reply{Status: 404, Final: true, Header: http.Header{"Content-Type": {"text/plain"}}})
		case strings.Contains(body, `"down"`):
			return &binding.Error{Source: wire.SourceTargetHTTP, Kind: "http_status", UpstreamStatus: 503}
		case strings.Contains(body, `"unreachable"`):
			return &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused"}
		}
		return echo(req, emit)
	}
	relay := newFakeRelay(t)
	relay.streams = true
	startAgent(t, relay, contractBinding{b}, func(c *Config, _ *Options) { c.StreamHeartbeat = 40 * time.Millisecond })
	relay.add(
		call("final", 1, "ping"),
		cmd("notify", `{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"progress"}}`),
		cmd("gone", `{"jsonrpc":"2.0","id":3,"method":"tools/call","params":{"name":"gone"}}`),
		cmd("down", `{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"down"}}`),
		cmd("unreachable", `{"jsonrpc":"2.0","id":5,"method":"tools/call","params":{"name":"unreachable"}}`),
		cmd("ack", `{"jsonrpc":"2.0","method":"notifications/initialized"}`),
		map[string]any{"request_id": "end", "shard_token": "s", "command_type": wire.CommandSessionTermination,
			"headers": map[string][]string{"Mcp-Session-Id": {"sess-1"}}},
		map[string]any{"request_id": "oauth", "shard_token": "s", "command_type": wire.CommandOAuthDiscovery, "headers": map[string]any{}},
		streamCmd("stream", streamCase("stream")), streamCmd("refused", streamCase("refused")), streamCmd("sdown", streamCase("unreachable")),
	)
	kinds := map[string]bool{}
	streamBodies := map[string]bool{}
	for _, id := range []string{"final", "notify", "gone", "down", "unreachable", "ack", "end", "oauth", "stream", "refused", "sdown"} {
		relay.finalFor(id)
		for _, p := range relay.postsFor(id) {
			kinds[p.resp.RespType] = true
			s := published
			if p.resp.RespType == wire.RespOAuthDiscovery {
				s = extended
			}
			if err := wiretest.Validate(t, s, p.raw); err != nil {
				t.Errorf("%s: %s body violates the contract: %v\n%s", id, p.resp.RespType, err, p.raw)
			}
			if p.header.Get(wire.HeaderShardToken) == "" {
				t.Errorf("%s: no %s header", id, wire.HeaderShardToken)
			}
			if strings.Contains(string(p.raw), "shard_token") {
				t.Errorf("%s: shard token in the body: %s", id, p.raw)
			}
			if id == "stream" && p.resp.RespType == wire.RespJSONRPCNotify {
				_, hasID := p.resp.RespHeaders[wire.HeaderLastEventID]
				switch body := string(p.resp.RespJSON) != "null"; {
				case body:
					streamBodies["message"] = true
				case hasID:
					streamBodies["event id"] = true
				case len(p.resp.RespHeaders) > 0:
					streamBodies["opening"] = true
				default:
					streamBodies["heartbeat"] = true
				}
			}
		}
	}
	for _, k := range []string{"opening", "message", "event id", "heartbeat"} {
		if !streamBodies[k] {
			t.Errorf("no get-stream %s body was checked", k)
		}
	}
	for _, k := range []string{wire.RespJSONRPCResponse, wire.RespJSONRPCNotify, wire.RespNotifyAck, wire.RespSessionTermination, wire.RespOAuthDiscovery} {
		if !kinds[k] {
			t.Errorf("no %s body was checked", k)
		}
	}
	// The 5xx and the unreachable server: synthesized failures whose
	// provenance follows x-tunnel-failure-schema.
	for _, id := range []string{"down", "unreachable", "sdown"} {
		checkFailure(t, relay.finalFor(id))
	}
	// The 404 passes through as the server's answer: no synthesized failure.
	if p := relay.finalFor("gone"); p.resp.RespCode != 404 || string(p.resp.RespJSON) != "null" {
		t.Errorf("upstream 404 posted as %d %s", p.resp.RespCode, p.resp.RespJSON)
	}
}

// contractBinding adds a scripted GET stream to oauthBinding.
type contractBinding struct{ *oauthBinding }

func (contractBinding) Stream(ctx context.Context, h http.Header, emit func(*binding.Reply) error) error {
	switch h.Get("X-Case") {
	case "refused":
		return emit(&binding.Reply{Status: 405, Header: http.Header{"Allow": {"POST"}}, Final: true})
	case "unreachable":
		return &binding.Error{Source: wire.SourceConnect, Kind: "connection_refused"}
	}
	for _, r := range []*binding.Reply{
		{Status: 200, Header: http.Header{"Content-Type": {"text/event-stream"}, "Mcp-Session-Id": {"sess-1"}}},
		{Status: 200, Body: json.RawMessage(`{"jsonrpc":"2.0","id":1,"method":"sampling/createMessage","params":{"maxTokens":8}}`), EventID: "e1"},
		{Status: 200, EventID: "e2"},
	} {
		if err := emit(r); err != nil {
			return err
		}
	}
	select { // quiet: heartbeats
	case <-time.After(150 * time.Millisecond):
	case <-ctx.Done():
		return ctx.Err()
	}
	return emit(&binding.Reply{Status: 200, Final: true})
}

// streamCase sets a get_stream command's X-Case header for contractBinding.
func streamCase(v string) func(map[string]any) {
	return func(c map[string]any) { c["headers"].(map[string][]string)["X-Case"] = []string{v} }
}
