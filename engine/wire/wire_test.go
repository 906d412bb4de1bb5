package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"

	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

const ownSchema = "testdata/schema.json"

func compile(t *testing.T, file, ptr string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "file:///" + filepath.Base(file)
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url + "#" + ptr)
	if err != nil {
		t.Fatalf("compile %s#%s: %v", file, ptr, err)
	}
	return s
}

func validate(t *testing.T, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("unmarshal for validation: %v", err)
	}
	return s.Validate(v)
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "fixtures", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestFixturesMatchOwnSchema checks that the project's fixtures satisfy its own
// schema and that the Go types round-trip them without losing a field.
func TestFixturesMatchOwnSchema(t *testing.T) {
	poll := compile(t, ownSchema, "/$defs/pollResponse")
	resp := compile(t, ownSchema, "/$defs/response")
	apiErr := compile(t, ownSchema, "/$defs/apiError")
	failure := compile(t, ownSchema, "/$defs/tunnelFailure")

	t.Run("poll", func(t *testing.T) {
		b := readFixture(t, "poll_mixed.json")
		if err := validate(t, poll, b); err != nil {
			t.Fatal(err)
		}
		cmds, bad, err := DecodePoll(b)
		if err != nil || len(bad) != 0 {
			t.Fatalf("DecodePoll: %v %v", err, bad)
		}
		if len(cmds) != 4 {
			t.Fatalf("got %d commands, want 4", len(cmds))
		}
		if cmds[1].Channel != DefaultChannel {
			t.Errorf("missing channel decoded as %q, want main", cmds[1].Channel)
		}
		if cmds[1].ResponseTimeout != nil {
			t.Errorf("null response_timeout decoded as %q", *cmds[1].ResponseTimeout)
		}
		if cmds[3].CommandType != "teleport" {
			t.Errorf("unknown command type must be kept for the agent to skip, got %q", cmds[3].CommandType)
		}
		// The JSON-RPC message is carried byte for byte.
		want := `{"jsonrpc": "2.0", "id": 0, "method": "tools/call", "params": {"name": "echo", "arguments": {"message": "hi"}}}`
		if string(cmds[0].JSONRPC) != want {
			t.Errorf("jsonrpc not carried raw:\n got %s\nwant %s", cmds[0].JSONRPC, want)
		}
		// Re-encoded commands still satisfy the schema.
		out, _ := json.Marshal(PollResponse{Commands: cmds})
		if err := validate(t, poll, out); err != nil {
			t.Fatalf("re-encoded poll: %v\n%s", err, out)
		}
	})
	t.Run("oauth_discovery command", func(t *testing.T) {
		b := readFixture(t, "poll_oauth_discovery.json")
		if err := validate(t, poll, b); err != nil {
			t.Fatal(err)
		}
		cmds, bad, err := DecodePoll(b)
		if err != nil || len(bad) != 0 || len(cmds) != 1 || cmds[0].CommandType != CommandOAuthDiscovery || cmds[0].JSONRPC != nil {
			t.Fatalf("DecodePoll = %+v %v %v", cmds, bad, err)
		}
		withBody := []byte(`{"commands":[{"request_id":"r","shard_token":"s","command_type":"oauth_discovery","created_at":"x","jsonrpc":{}}]}`)
		if err := validate(t, poll, withBody); err == nil {
			t.Error("schema accepted an oauth_discovery command with a jsonrpc body")
		}
	})
	t.Run("acknowledgements carry no payload", func(t *testing.T) {
		for _, body := range []string{
			`{"request_id":"r","resp_code":202,"resp_type":"notify_ack","resp_json":null}`,
			`{"request_id":"r","resp_code":204,"resp_type":"session_termination_response","resp_headers":{}}`,
		} {
			if err := validate(t, resp, []byte(body)); err == nil {
				t.Errorf("schema accepted %s", body)
			}
		}
	})
	for _, name := range ownResponseFixtures {
		t.Run(name, func(t *testing.T) {
			b := readFixture(t, name)
			if err := validate(t, resp, b); err != nil {
				t.Fatal(err)
			}
			var r Response
			if err := json.Unmarshal(b, &r); err != nil {
				t.Fatal(err)
			}
			out, _ := json.Marshal(r)
			if err := validate(t, resp, out); err != nil {
				t.Fatalf("re-encoded: %v\n%s", err, out)
			}
			var a, b2 map[string]any
			_ = json.Unmarshal(b, &a)
			_ = json.Unmarshal(out, &b2)
			if h, ok := a["resp_headers"].(map[string]any); ok && len(h) == 0 {
				delete(a, "resp_headers") // an empty header map and none say the same
			}
			if !reflect.DeepEqual(a, b2) {
				t.Errorf("round trip changed the response:\n got %s\nwant %s", out, b)
			}
		})
	}
	t.Run("api error", func(t *testing.T) {
		if err := validate(t, apiErr, readFixture(t, "error_not_connected.json")); err != nil {
			t.Fatal(err)
		}
		out, _ := json.Marshal(NewAPIError("service_unavailable", CodeTunnelClientNotConnected, "x"))
		if err := validate(t, apiErr, out); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("tunnel failure rules", func(t *testing.T) {
		st := 503
		good := []TunnelFailure{
			{Version: 1, Source: SourceTargetHTTP, UpstreamResponseReceived: true, UpstreamStatus: &st, TransportErrorKind: "http_status"},
			{Version: 1, Source: SourceConnect, TransportErrorKind: "connection_refused"},
			{Version: 1, Source: SourceTransportClosed, TransportErrorKind: "unexpected_eof"},
			{Version: 1, Source: SourceProtocol, UpstreamResponseReceived: true, TransportErrorKind: "malformed_json"},
		}
		for _, f := range good {
			out, _ := json.Marshal(f)
			if err := validate(t, failure, out); err != nil {
				t.Errorf("%s: %v", out, err)
			}
		}
		ok := 200
		bad := []TunnelFailure{
			{Version: 1, Source: SourceTargetHTTP, UpstreamResponseReceived: true},                      // no status
			{Version: 1, Source: SourceConnect, UpstreamResponseReceived: true, UpstreamStatus: &st},    // status but not target_http
			{Version: 1, Source: SourceTransportClosed, UpstreamResponseReceived: true},                 // closed but received
			{Version: 1, Source: SourceTargetHTTP, UpstreamResponseReceived: true, UpstreamStatus: &ok}, // 200 is not a failure status
		}
		for _, f := range bad {
			out, _ := json.Marshal(f)
			if err := validate(t, failure, out); err == nil {
				t.Errorf("%s: schema accepted an invalid failure", out)
			}
		}
	})
}

// ownResponseFixtures are the project's response POST bodies, one per kind
// the agent sends.
var ownResponseFixtures = append([]string{"response_final.json", "response_notify.json", "response_notify_ack.json",
	"response_session_end.json", "response_tunnel_failure.json", "response_oauth_discovery.json"}, streamFixtures...)

// TestContractOpenAPI cross-checks the wire types and the project's fixtures
// against the published OpenAPI contract.
func TestContractOpenAPI(t *testing.T) {
	c := wiretest.Load(t)
	sharedOpenAPI := c.Path()
	poll := c.Schema("/components/schemas/PolledCommandList")
	resp := c.Schema("/components/schemas/TunnelResponsePayload")
	apiErr := c.Schema("/components/schemas/APIErrorResponse")
	meta := c.Schema("/components/schemas/TunnelClientMetadata")
	ack := c.Schema("/components/schemas/TunnelResponseAck")
	failure := c.Schema("/components/schemas/TunnelResponsePayload/properties/resp_json/x-tunnel-failure-schema")

	// The published fixtures decode into our types and re-encode to valid payloads.
	pollFixture, err := os.ReadFile(filepath.Join(filepath.Dir(sharedOpenAPI), "poll_command_envelope.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := validate(t, poll, pollFixture); err != nil {
		t.Fatalf("published poll fixture: %v", err)
	}
	cmds, bad, err := DecodePoll(pollFixture)
	if err != nil || len(bad) != 0 || len(cmds) != 2 {
		t.Fatalf("DecodePoll(published fixture) = %d cmds, %v, %v", len(cmds), bad, err)
	}
	if cmds[0].Channel != "harpoon" || cmds[1].CommandType != CommandSessionTermination {
		t.Errorf("decoded fixture wrong: %+v", cmds)
	}
	out, _ := json.Marshal(PollResponse{Commands: cmds})
	if err := validate(t, poll, out); err != nil {
		t.Errorf("re-encoded published poll: %v\n%s", err, out)
	}
	notify, err := os.ReadFile(filepath.Join(filepath.Dir(sharedOpenAPI), "jsonrpc_notify_response.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r Response
	if err := json.Unmarshal(notify, &r); err != nil {
		t.Fatal(err)
	}
	if r.Final() {
		t.Error("jsonrpc_notify must not be final")
	}
	out, _ = json.Marshal(r)
	if err := validate(t, resp, out); err != nil {
		t.Errorf("re-encoded published notify: %v", err)
	}

	// Our own fixtures satisfy the published contract too.
	// poll_mixed holds an unknown command type, which the published
	// discriminator does not list: the contract rejects that command (proving
	// the validator is strict), while DecodePoll keeps it for the agent to skip.
	if err := validate(t, poll, readFixture(t, "poll_mixed.json")); err == nil {
		t.Error("published schema accepted an unknown command type: the validator is not checking commands")
	}
	// oauth_discovery and its oauth_discovery_response are what OpenAI's agent
	// and its mock of the hosted service exchange; the published contract does
	// not list them yet. They are checked against the contract extended by
	// exactly those two names (every other field as published), and the
	// unextended contract must still refuse them: when it starts listing them,
	// this test says so.
	extPoll := c.Extended("/components/schemas/PolledCommandList")
	extResp := c.Extended("/components/schemas/TunnelResponsePayload")
	for _, name := range ownResponseFixtures {
		b := readFixture(t, name)
		if name == "response_oauth_discovery.json" {
			if err := validate(t, resp, b); err == nil {
				t.Errorf("the published contract now lists oauth_discovery_response: validate %s against it directly", name)
			}
			if err := validate(t, extResp, b); err != nil {
				t.Errorf("%s against the published TunnelResponsePayload plus oauth_discovery_response: %v", name, err)
			}
			continue
		}
		if err := validate(t, resp, b); err != nil {
			t.Errorf("%s against published TunnelResponsePayload: %v", name, err)
		}
	}
	if err := validate(t, poll, readFixture(t, "poll_oauth_discovery.json")); err == nil {
		t.Error("the published contract now lists oauth_discovery commands: validate the fixture against it directly")
	}
	if err := validate(t, extPoll, readFixture(t, "poll_oauth_discovery.json")); err != nil {
		t.Errorf("oauth_discovery command against the published PolledCommandList plus oauth_discovery: %v", err)
	}
	// The get-stream extension's command is Sluice's own: the published
	// command list does not know it, which is why a relay hands it only to
	// agents that offered the extension. Every body the agent posts for it
	// (streamFixtures, among ownResponseFixtures above) is an ordinary
	// response payload.
	if err := validate(t, poll, readFixture(t, "poll_get_stream.json")); err == nil {
		t.Error("published schema accepted a get_stream command: the validator is not checking commands")
	}
	// The items of a response batch (Sluice's extension) are ordinary
	// response payloads.
	items, err := DecodeResponseBatch(readFixture(t, "response_batch.json"))
	if err != nil {
		t.Fatal(err)
	}
	for i, it := range items {
		if err := validate(t, resp, it); err != nil {
			t.Errorf("batch item %d against published TunnelResponsePayload: %v", i, err)
		}
	}
	if err := validate(t, apiErr, readFixture(t, "error_not_connected.json")); err != nil {
		t.Errorf("error envelope: %v", err)
	}
	b, _ := json.Marshal(TunnelMetadata{ID: "tunnel_0123456789abcdef0123456789abcdef", Name: "n", Description: "d"})
	if err := validate(t, meta, b); err != nil {
		t.Errorf("metadata: %v", err)
	}
	b, _ = json.Marshal(Ack{Status: "ok"})
	if err := validate(t, ack, b); err != nil {
		t.Errorf("ack: %v", err)
	}
	var tf struct {
		RespJSON struct {
			Error struct {
				Data struct {
					TunnelFailure json.RawMessage `json:"tunnel_failure"`
				} `json:"data"`
			} `json:"error"`
		} `json:"resp_json"`
	}
	_ = json.Unmarshal(readFixture(t, "response_tunnel_failure.json"), &tf)
	if err := validate(t, failure, tf.RespJSON.Error.Data.TunnelFailure); err != nil {
		t.Errorf("tunnel failure against the published provenance schema: %v", err)
	}

	// Every error code we use is one the contract lists.
	raw, _ := os.ReadFile(sharedOpenAPI)
	for _, code := range []string{CodeInvalidChannelFormat, CodeInvalidJSONPayload, CodeInvalidTunnelIDFormat,
		CodeMissingMCPSessionID, CodePendingRequestNotFound, CodeRateLimitExceeded, CodeRequestBodyTooLarge,
		CodeTunnelClientNotConnected, CodeTunnelQueueFull, CodeTunnelRequestMismatch, CodeTunnelTransportUnavail,
		CodeTunnelUseForbidden, CodeTunnelMissingPrincipals} {
		if !bytes.Contains(raw, []byte(`"`+code+`"`)) {
			t.Errorf("error code %q is not in the published contract", code)
		}
	}
	for _, src := range []string{SourceTargetHTTP, SourceDNS, SourceTLS, SourceConnect, SourceTransportClosed, SourceTimeout, SourceProtocol, SourceClientInternal} {
		if !bytes.Contains(raw, []byte(`"`+src+`"`)) {
			t.Errorf("tunnel failure source %q is not in the published contract", src)
		}
	}
}

func TestParseResponseTimeout(t *testing.T) {
	tests := []struct {
		in   string
		want time.Duration
		err  bool
	}{
		{"0s", 0, false},
		{"120000ms", 120 * time.Second, false},
		{"5s", 5 * time.Second, false},
		{"2m", 2 * time.Minute, false},
		{"1h", time.Hour, false},
		{"750us", 750 * time.Microsecond, false},
		{"10ns", 10, false},
		{"", 0, true},
		{"s", 0, true},
		{"5", 0, true},
		{"-5s", 0, true},
		{"5.5s", 0, true},
		{"5 s", 0, true},
		{"5S", 0, true},
		{"5sec", 0, true},
		{"1m30s", 0, true},
		{"99999999999999999999h", 0, true},
		{"9223372036854775807s", 0, true},
		{"9223372036854775807ns", 9223372036854775807, false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseResponseTimeout(tt.in)
			if tt.err {
				if !errors.Is(err, ErrMalformedTimeout) {
					t.Fatalf("ParseResponseTimeout(%q) = %v, %v; want ErrMalformedTimeout", tt.in, got, err)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Fatalf("ParseResponseTimeout(%q) = %v, %v; want %v", tt.in, got, err, tt.want)
			}
		})
	}
	for _, d := range []time.Duration{0, time.Millisecond, 120 * time.Second, 1500 * time.Microsecond} {
		got, err := ParseResponseTimeout(FormatResponseTimeout(d))
		if err != nil || got != d {
			t.Errorf("round trip %v: %v %v", d, got, err)
		}
	}
}

func TestDecodePollBadCommands(t *testing.T) {
	body := `{"commands":[
		{"request_id":"a","shard_token":"s","command_type":"jsonrpc","created_at":"x","jsonrpc":{"jsonrpc":"2.0","id":1,"method":"ping"}},
		{"request_id":"b","shard_token":"s2","command_type":"jsonrpc","created_at":"x","jsonrpc":"not an object"},
		{"request_id":7},
		{"request_id":"c","shard_token":"s","command_type":"jsonrpc","created_at":"x","channel":"Bad Channel","jsonrpc":{}},
		{"request_id":"d","shard_token":"s","command_type":"jsonrpc","created_at":"x","jsonrpc":[1,2]},
		{"shard_token":"s","command_type":"session_termination","created_at":"x"},
		{"request_id":"e","shard_token":"s","command_type":"session_termination","created_at":"x","headers":{"Mcp-Session-Id":["x"]}}
	]}`
	cmds, bad, err := DecodePoll([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, c := range cmds {
		ids = append(ids, c.RequestID)
	}
	if strings.Join(ids, ",") != "a,e" {
		t.Errorf("good commands = %v, want [a e]", ids)
	}
	if len(bad) != 5 {
		t.Fatalf("bad = %d, want 5: %+v", len(bad), bad)
	}
	if bad[0].RequestID != "b" || bad[0].ShardToken != "s2" {
		t.Errorf("bad[0] should keep the id and token for an answer: %+v", bad[0])
	}
	for _, in := range []string{``, `[]`, `{"commands":{}}`, `nope`} {
		if _, _, err := DecodePoll([]byte(in)); err == nil {
			t.Errorf("DecodePoll(%q) accepted garbage", in)
		}
	}
	if cmds, _, err := DecodePoll([]byte(`{"commands":[]}`)); err != nil || len(cmds) != 0 {
		t.Errorf("empty poll: %v %v", cmds, err)
	}
}

func TestValidators(t *testing.T) {
	if !ValidTunnelID("tunnel_0123456789abcdef0123456789abcdef") {
		t.Error("valid tunnel id rejected")
	}
	for _, id := range []string{"", "tunnel_", "tunnel_0123456789ABCDEF0123456789abcdef", "tunnel_0123456789abcdef0123456789abcde", "tunnel_0123456789abcdef0123456789abcdef0", "tunnelx0123456789abcdef0123456789abcdef", "tunnel_0123456789abcdef0123456789abcde\n"} {
		if ValidTunnelID(id) {
			t.Errorf("ValidTunnelID(%q) = true", id)
		}
	}
	if !ValidKey("sk-sluice-AbC_09") || ValidKey("") || ValidKey("sk sluice") || ValidKey("sk+x") {
		t.Error("ValidKey wrong")
	}
	if !ValidChannel("main") || !ValidChannel("a_b-1") || ValidChannel("") || ValidChannel("Main") || ValidChannel(strings.Repeat("a", 65)) {
		t.Error("ValidChannel wrong")
	}
}

func TestFilterResponseHeaders(t *testing.T) {
	h := http.Header{}
	h.Set("Content-Type", "text/event-stream")
	h.Set("Mcp-Session-Id", "abc")
	h.Set("Mcp-Protocol-Version", "2025-11-25")
	h.Set("Www-Authenticate", `Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`)
	h.Set("Set-Cookie", "secret=1")
	h.Set("Server", "internal/1.0")
	h.Set("Access-Control-Expose-Headers", "")
	h.Set("Last-Event-Id", "7")
	h.Add("Connection", "close, Last-Event-ID")
	got := FilterResponseHeaders(h)
	want := map[string][]string{
		"Content-Type":         {"text/event-stream"},
		"Mcp-Session-Id":       {"abc"},
		"Mcp-Protocol-Version": {"2025-11-25"},
		"Www-Authenticate":     {`Bearer resource_metadata="https://x/.well-known/oauth-protected-resource"`},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("FilterResponseHeaders = %v\nwant %v", got, want)
	}
}

func FuzzDecodePoll(f *testing.F) {
	for _, name := range []string{"poll_mixed.json"} {
		b, _ := os.ReadFile(filepath.Join("testdata", "fixtures", name))
		f.Add(b)
	}
	f.Add([]byte(`{"commands":[{"request_id":"a","command_type":"jsonrpc","jsonrpc":{"id":1}}]}`))
	f.Add([]byte(`{"commands":null}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		cmds, bad, err := DecodePoll(b)
		if err != nil {
			return
		}
		for _, c := range cmds {
			if c.RequestID == "" || c.Channel == "" {
				t.Fatalf("accepted command without id or channel: %+v", c)
			}
			if c.CommandType == CommandJSONRPC && !json.Valid(c.JSONRPC) {
				t.Fatalf("accepted invalid jsonrpc payload %q", c.JSONRPC)
			}
		}
		for _, b := range bad {
			if b.Err == nil {
				t.Fatal("bad command without error")
			}
		}
	})
}

func FuzzParseResponseTimeout(f *testing.F) {
	for _, s := range []string{"0s", "120000ms", "5s", "1h", "-1s", "1.5s", "9223372036854775807ns", "99999999999999999999h"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d, err := ParseResponseTimeout(s)
		if err != nil {
			return
		}
		if d < 0 {
			t.Fatalf("%q parsed to a negative duration %v", s, d)
		}
		// Anything accepted matches the wire pattern and round-trips.
		if !responseTimeoutPattern.MatchString(s) {
			t.Fatalf("%q accepted but does not match the wire pattern", s)
		}
		d2, err := ParseResponseTimeout(FormatResponseTimeout(d))
		if err != nil || d2 != d {
			t.Fatalf("round trip of %v: %v %v", d, d2, err)
		}
	})
}

// FuzzValidators holds the hand-written validators to the patterns WIRE.md
// states them in.
func FuzzValidators(f *testing.F) {
	tunnelRe := regexp.MustCompile(`^tunnel_[a-z0-9]{32}$`)
	channelRe := regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	keyRe := regexp.MustCompile(`^[0-9A-Za-z_-]+$`)
	for _, s := range []string{"", "main", "tunnel_0123456789abcdef0123456789abcdef", "sk-sluice-AbC_09", "tunnel_0123456789abcdef0123456789abcde\n", "Main"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := ValidTunnelID(s), tunnelRe.MatchString(s); got != want {
			t.Errorf("ValidTunnelID(%q) = %v, want %v", s, got, want)
		}
		if got, want := ValidChannel(s), channelRe.MatchString(s); got != want {
			t.Errorf("ValidChannel(%q) = %v, want %v", s, got, want)
		}
		if got, want := ValidKey(s), keyRe.MatchString(s); got != want {
			t.Errorf("ValidKey(%q) = %v, want %v", s, got, want)
		}
	})
}

func TestValidSemver(t *testing.T) {
	for v, want := range map[string]bool{
		"1.0.0": true, "0.7.0-dev": true, "1.2.3-rc.1+build.5": true, "10.20.30": true, "1.0.0-alpha-1": true,
		"1.0.0+20261204.abc": true,
		"":                   false, "1.0": false, "v1.0.0": false, "01.0.0": false, "1.0.0-": false, "1.0.0-01": false,
		"1474d1f": false, "1.0.0+": false, "1.0.0-a..b": false, "1.0.0.0": false, "devel": false, "1.a.0": false,
	} {
		if got := ValidSemver(v); got != want {
			t.Errorf("ValidSemver(%q) = %v, want %v", v, got, want)
		}
	}
}
