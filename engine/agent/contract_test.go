package agent

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/binding"
	"github.com/sluicemcp/sluice/engine/wire"
	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// TestEveryBodyMatchesContract runs one command of every kind through a real
// agent and checks each response POST body it sends against the published
// TunnelResponsePayload (oauth_discovery_response against the contract
// extended by that one name, which it does not list yet), and the headers it
// sends against the published header rules.
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
	startAgent(t, relay, b, nil)
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
	)
	kinds := map[string]bool{}
	for _, id := range []string{"final", "notify", "gone", "down", "unreachable", "ack", "end", "oauth"} {
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
		}
	}
	for _, k := range []string{wire.RespJSONRPCResponse, wire.RespJSONRPCNotify, wire.RespNotifyAck, wire.RespSessionTermination, wire.RespOAuthDiscovery} {
		if !kinds[k] {
			t.Errorf("no %s body was checked", k)
		}
	}
	// The 5xx and the unreachable server: synthesized failures whose
	// provenance follows x-tunnel-failure-schema.
	for _, id := range []string{"down", "unreachable"} {
		checkFailure(t, relay.finalFor(id))
	}
	// The 404 passes through as the server's answer: no synthesized failure.
	if p := relay.finalFor("gone"); p.resp.RespCode != 404 || string(p.resp.RespJSON) != "null" {
		t.Errorf("upstream 404 posted as %d %s", p.resp.RespCode, p.resp.RespJSON)
	}
}
