package wire

import (
	"encoding/json"
	"testing"

	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// oauthASFixtures are the bodies an agent posts for oauth_as commands.
var oauthASFixtures = []string{"response_oauth_as_redirect.json", "response_oauth_as_token.json"}

// TestOAuthASFixtures: the oauth-as extension's commands and answers
// satisfy the project's schema and round-trip through the codec; the schema
// refuses an oauth_as command without its request, naming an endpoint the
// extension does not serve, or with a jsonrpc body.
func TestOAuthASFixtures(t *testing.T) {
	poll := compile(t, ownSchema, "/$defs/pollResponse")
	resp := compile(t, ownSchema, "/$defs/response")
	b := readFixture(t, "poll_oauth_as.json")
	if err := validate(t, poll, b); err != nil {
		t.Fatal(err)
	}
	cmds, bad, err := DecodePoll(b)
	if err != nil || len(bad) != 0 || len(cmds) != 2 {
		t.Fatalf("DecodePoll = %d, %v, %v", len(cmds), bad, err)
	}
	if a := cmds[1].OAuthAS; cmds[1].CommandType != CommandOAuthAS || a == nil || a.Endpoint != ASToken || a.Method != "POST" || a.Body == "" {
		t.Fatalf("decoded %+v", cmds[1])
	}
	out := AppendPollResponse(nil, cmds)
	if err := validate(t, poll, out); err != nil {
		t.Fatalf("re-encoded: %v\n%s", err, out)
	}
	if again, _, _ := DecodePoll(out); again[0].OAuthAS == nil || *again[0].OAuthAS != *cmds[0].OAuthAS {
		t.Errorf("round trip changed the request: %s", out)
	}
	for _, doc := range []string{
		`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_as","created_at":"x"}]}`,
		`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_as","created_at":"x","oauth_as":{"endpoint":"userinfo_endpoint","method":"GET"}}]}`,
		`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_as","created_at":"x","oauth_as":{"endpoint":"jwks_uri","method":"DELETE"}}]}`,
		`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_as","created_at":"x","oauth_as":{"endpoint":"jwks_uri","method":"GET","url":"http://10.0.0.1/"}}]}`,
		`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_as","created_at":"x","oauth_as":{"endpoint":"jwks_uri","method":"GET"},"jsonrpc":{}}]}`,
	} {
		if validate(t, poll, []byte(doc)) == nil {
			t.Errorf("schema accepted %s", doc)
		}
	}
	// The decoder refuses what the schema refuses (except unknown members,
	// which it ignores, as everywhere).
	for _, doc := range []string{
		`{"commands":[{"request_id":"r","command_type":"oauth_as"}]}`,
		`{"commands":[{"request_id":"r","command_type":"oauth_as","oauth_as":{"endpoint":"userinfo_endpoint","method":"GET"}}]}`,
		`{"commands":[{"request_id":"r","command_type":"oauth_as","oauth_as":{"endpoint":"jwks_uri","method":"PUT"}}]}`,
	} {
		if cmds, bad, err := DecodePoll([]byte(doc)); err != nil || len(cmds) != 0 || len(bad) != 1 {
			t.Errorf("DecodePoll(%s) = %v, %v, %v: want one bad command", doc, cmds, bad, err)
		}
	}
	for _, name := range oauthASFixtures {
		b := readFixture(t, name)
		if err := validate(t, resp, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		r, err := DecodeResponse(b)
		if err != nil || r.RespType != RespOAuthAS || !r.Final() {
			t.Errorf("%s: %+v %v", name, r, err)
		}
	}
}

// TestContractOAuthAS: the extension is Sluice's own. The published command
// list does not know oauth_as (which is why a relay sends it only to agents
// that offered it), nor its answer's resp_type; every other field of both
// is as published.
func TestContractOAuthAS(t *testing.T) {
	c := wiretest.Load(t)
	poll := c.Schema("/components/schemas/PolledCommandList")
	resp := c.Schema("/components/schemas/TunnelResponsePayload")
	if validate(t, poll, readFixture(t, "poll_oauth_as.json")) == nil {
		t.Error("the published contract accepts an oauth_as command: the validator is not checking commands")
	}
	for _, name := range oauthASFixtures {
		b := readFixture(t, name)
		if validate(t, resp, b) == nil {
			t.Errorf("the published contract now lists oauth_as_response: validate %s directly", name)
		}
		// With the published resp_type it is an ordinary response payload.
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		m["resp_type"] = RespJSONRPCResponse
		out, _ := json.Marshal(m)
		if err := validate(t, resp, out); err != nil {
			t.Errorf("%s (resp_type aside) against the published TunnelResponsePayload: %v", name, err)
		}
	}
}
