package e2e

import (
	"context"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// tsClientOut is the JSON line testdata/ts-client.mjs prints.
type tsClientOut struct {
	OK                bool     `json:"ok"`
	Error             string   `json:"error"`
	SessionID         string   `json:"sessionId"`
	ProtocolVersion   string   `json:"protocolVersion"`
	ServerName        string   `json:"serverName"`
	Tools             []string `json:"tools"`
	Events            []string `json:"events"`
	Progress          []int    `json:"progress"`
	LongResult        string   `json:"longResult"`
	ServerRequests    []string `json:"serverRequests"`
	SamplingResult    string   `json:"samplingResult"`
	ElicitationResult string   `json:"elicitationResult"`
	Echo              string   `json:"echo"`
	Terminated        bool     `json:"terminated"`
}

func runTSClient(t *testing.T, url, key string) tsClientOut {
	t.Helper()
	requireFiles(t, filepath.Join(tsSDKDir(), "package.json"))
	node := node20(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	script, _ := filepath.Abs(filepath.Join("testdata", "ts-client.mjs"))
	stdout, err := runNode(t, ctx, node, []string{"MCP_URL=" + url, "MCP_KEY=" + key, "MCP_SDK_DIR=" + tsSDKDir()}, script)
	var out tsClientOut
	if jerr := json.Unmarshal(stdout, &out); jerr != nil {
		t.Fatalf("ts-client output (exit %v): %v\n%s", err, jerr, stdout)
	}
	return out
}

// TestTypeScriptClient drives the reference TypeScript "everything" server
// with the official TypeScript SDK client, directly (the control) and through
// relay+agent with a client key: tools/list, a tool call whose progress
// notifications must arrive before its result, server-to-client sampling and
// elicitation requests answered by the client, and DELETE at the end, which
// must reach the server.
func TestTypeScriptClient(t *testing.T) {
	serverURL, server := startServerEverything(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: serverURL}}})
	te := h.tunnel(0)
	for _, tc := range []struct {
		name, url, key string
	}{
		{"direct", serverURL, ""},
		{"tunnel", te.mcpURL, te.clientKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := runTSClient(t, tc.url, tc.key)
			checkEverythingTSRun(t, out)
			// The server logs each DELETE it handles: the session's end
			// must have reached it (through the tunnel: as session_termination).
			want := "Received session termination request for session " + out.SessionID
			deadline := time.Now().Add(5 * time.Second)
			for !strings.Contains(server.out.String(), want) {
				if time.Now().After(deadline) {
					t.Errorf("server never saw DELETE for session %s", out.SessionID)
					break
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
	}
}

// checkEverythingTSRun checks what ts-client.mjs saw of the reference
// "everything" server: its tools, three progress notifications before the
// long operation's result, sampling and elicitation answered by the client
// and seen by the server, echo, and the session's end.
func checkEverythingTSRun(t *testing.T, out tsClientOut) {
	t.Helper()
	if !out.OK {
		t.Fatalf("ts client failed: %s (output %+v)", out.Error, out)
	}
	if out.ServerName != "mcp-servers/everything" || out.ProtocolVersion == "" || out.SessionID == "" {
		t.Errorf("server %q, protocol %q, session %q", out.ServerName, out.ProtocolVersion, out.SessionID)
	}
	for _, want := range []string{"echo", "trigger-long-running-operation", "trigger-sampling-request", "trigger-elicitation-request"} {
		if !slices.Contains(out.Tools, want) {
			t.Errorf("tools/list lacks %q: %v", want, out.Tools)
		}
	}
	if got := strings.Join(out.Events, ","); got != "progress:1/3,progress:2/3,progress:3/3,result" {
		t.Errorf("events = %q, want three progress notifications, then the result", got)
	}
	if !strings.Contains(out.LongResult, "Long running operation completed") {
		t.Errorf("long-running result = %q", out.LongResult)
	}
	if got := strings.Join(out.ServerRequests, ","); got != "sampling/createMessage,elicitation/create" {
		t.Errorf("server-to-client requests answered = %q", got)
	}
	if !strings.Contains(out.SamplingResult, "sampled through the tunnel") {
		t.Errorf("sampling result = %q: the client's answer did not reach the server", out.SamplingResult)
	}
	if !strings.Contains(out.ElicitationResult, "Name: Sluice Tunnel") {
		t.Errorf("elicitation result = %q: the client's answer did not reach the server", out.ElicitationResult)
	}
	if out.Echo != "Echo: ünïcode ✓ 0" {
		t.Errorf("echo = %q", out.Echo)
	}
	if !out.Terminated {
		t.Errorf("terminateSession did not end the session")
	}
}
