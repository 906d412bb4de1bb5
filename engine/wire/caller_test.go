package wire

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/wire/wiretest"
)

// TestCallerFixture: commands carrying the caller extension satisfy the
// project's schema, decode with the caller, and re-encode with it; the
// schema refuses a caller with a control character or over the bound.
func TestCallerFixture(t *testing.T) {
	poll := compile(t, ownSchema, "/$defs/pollResponse")
	b := readFixture(t, "poll_caller.json")
	if err := validate(t, poll, b); err != nil {
		t.Fatal(err)
	}
	cmds, bad, err := DecodePoll(b)
	if err != nil || len(bad) != 0 || len(cmds) != 2 {
		t.Fatalf("DecodePoll = %d cmds, %v, %v", len(cmds), bad, err)
	}
	if cmds[0].Caller != "ci-bot" || cmds[1].Caller != "user-8f3a@idp.example" {
		t.Fatalf("callers = %q, %q", cmds[0].Caller, cmds[1].Caller)
	}
	out := AppendPollResponse(nil, cmds)
	if err := validate(t, poll, out); err != nil {
		t.Fatalf("re-encoded: %v\n%s", err, out)
	}
	again, _, _ := DecodePoll(out)
	if again[0].Caller != "ci-bot" {
		t.Errorf("round trip lost the caller: %s", out)
	}
	// Without a caller, no field is written.
	cmds[0].Caller = ""
	if out := AppendPollResponse(nil, cmds[:1]); strings.Contains(string(out), `"caller"`) {
		t.Errorf("empty caller written: %s", out)
	}
	for _, c := range []string{"a\nb", "\x7f", strings.Repeat("a", 257), ""} {
		cmd, _ := json.Marshal(c)
		doc := `{"commands":[{"request_id":"r","shard_token":"s","command_type":"session_termination","created_at":"x","caller":` + string(cmd) + `}]}`
		if validate(t, poll, []byte(doc)) == nil {
			t.Errorf("schema accepted caller %q", c)
		}
	}
}

// TestContractCaller: a command with the caller field is still a valid
// command of the published contract (its commands allow additional
// properties), so the field cannot break an agent that does not know it.
func TestContractCaller(t *testing.T) {
	c := wiretest.Load(t)
	poll := c.Schema("/components/schemas/PolledCommandList")
	if err := validate(t, poll, readFixture(t, "poll_caller.json")); err != nil {
		t.Fatalf("poll_caller.json against the published PolledCommandList: %v", err)
	}
}

func TestValidCaller(t *testing.T) {
	for c, want := range map[string]bool{
		"ci-bot": true, "user@idp.example": true, "Zoë Müller": true, "auth0|5f7c8e": true,
		strings.Repeat("a", MaxCallerBytes): true,
		"":                                  false, strings.Repeat("a", MaxCallerBytes+1): false, "a\nb": false, "a\tb": false,
		"a\x00": false, "\x7f": false, "a\u0085b": false, "\xff": false,
	} {
		if got := ValidCaller(c); got != want {
			t.Errorf("ValidCaller(%q) = %v, want %v", c, got, want)
		}
	}
}

func TestHasExtensionCaller(t *testing.T) {
	if !HasExtension("response-batch, get-stream, caller", ExtCaller) || HasExtension("callers", ExtCaller) {
		t.Error("HasExtension does not find caller exactly")
	}
}
