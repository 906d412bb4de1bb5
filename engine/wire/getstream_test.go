package wire

import (
	"encoding/json"
	"strings"
	"testing"
)

// streamFixtures are the bodies an agent posts for a get_stream command.
var streamFixtures = []string{
	"response_stream_open.json", "response_stream_message.json", "response_stream_event_id.json",
	"response_stream_heartbeat.json", "response_stream_end.json", "response_stream_refused.json",
}

// TestGetStreamFixtures: the get-stream extension's command and responses
// satisfy the project's schema, its stricter definitions of them, and the
// Go types and decoders round-trip them.
func TestGetStreamFixtures(t *testing.T) {
	poll := compile(t, ownSchema, "/$defs/pollResponse")
	command := compile(t, ownSchema, "/$defs/getStreamCommand")
	resp := compile(t, ownSchema, "/$defs/response")
	stream := compile(t, ownSchema, "/$defs/streamResponse")

	b := readFixture(t, "poll_get_stream.json")
	if err := validate(t, poll, b); err != nil {
		t.Fatal(err)
	}
	var raw struct{ Commands []json.RawMessage }
	_ = json.Unmarshal(b, &raw)
	if err := validate(t, command, raw.Commands[0]); err != nil {
		t.Fatal(err)
	}
	cmds, bad, err := DecodePoll(b)
	if err != nil || len(bad) != 0 || len(cmds) != 1 {
		t.Fatalf("DecodePoll: %v %v %d", err, bad, len(cmds))
	}
	c := cmds[0]
	if c.CommandType != CommandGetStream || c.JSONRPC != nil || c.Headers["Last-Event-Id"][0] != "ev-41" {
		t.Fatalf("decoded %+v", c)
	}
	out := AppendPollResponse(nil, cmds)
	if err := validate(t, poll, out); err != nil {
		t.Fatalf("re-encoded: %v\n%s", err, out)
	}
	// The stricter definition rejects a jsonrpc command and a get_stream
	// with a body: the validator is checking.
	var mixed struct{ Commands []json.RawMessage }
	_ = json.Unmarshal(readFixture(t, "poll_mixed.json"), &mixed)
	if validate(t, command, mixed.Commands[0]) == nil {
		t.Error("getStreamCommand accepted a jsonrpc command")
	}
	if validate(t, command, []byte(`{"request_id":"r","shard_token":"s","created_at":"x","command_type":"get_stream","jsonrpc":{}}`)) == nil {
		t.Error("getStreamCommand accepted a jsonrpc body")
	}

	for _, name := range streamFixtures {
		b := readFixture(t, name)
		if err := validate(t, resp, b); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if err := validate(t, stream, b); err != nil {
			t.Errorf("%s against streamResponse: %v", name, err)
		}
		r, err := DecodeResponse(b)
		if err != nil || r.RequestID == "" {
			t.Fatalf("%s: %v", name, err)
		}
		if wantFinal := name == "response_stream_end.json" || name == "response_stream_refused.json"; r.Final() != wantFinal {
			t.Errorf("%s: final = %v", name, r.Final())
		}
	}
	if validate(t, stream, []byte(`{"request_id":"r","resp_code":200,"resp_type":"jsonrpc_notify","resp_headers":{"Last-Event-Id":["a\nb"]}}`)) == nil {
		t.Error("streamResponse accepted an event id with a line break")
	}
	if validate(t, stream, readFixture(t, "response_session_end.json")) == nil {
		t.Error("streamResponse accepted a session termination")
	}
}

func TestValidEventID(t *testing.T) {
	for id, want := range map[string]bool{
		"": true, "ev-1": true, "0123:stream/7": true, strings.Repeat("a", 1024): true,
		strings.Repeat("a", 1025): false, "a\nb": false, "a\rb": false, "a\x00b": false,
	} {
		if got := ValidEventID(id); got != want {
			t.Errorf("ValidEventID(%q) = %v", id, got)
		}
	}
}
