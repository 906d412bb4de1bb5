package e2e

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestInspectorCLI makes one tools/call through the tunnel with the MCP
// Inspector CLI (@modelcontextprotocol/inspector-cli, the Inspector that runs
// on Node 20), invoked the way README.md and `sluice dev` tell users to.
func TestInspectorCLI(t *testing.T) {
	requireFiles(t, inspectorCLIJS())
	node := node20(t)
	serverURL, _ := startServerEverything(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: serverURL}}})
	te := h.tunnel(0)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// The documented command: mcp-inspector-cli --cli URL …. The CLI runs
	// its worker with the `node` on PATH, and names itself from
	// ../package.json relative to the working directory (a quirk of the
	// standalone package), so it runs in a directory whose parent has one,
	// as README.md says.
	cmd := exec.CommandContext(ctx, node, inspectorCLIJS(), "--cli", te.mcpURL,
		"--transport", "http", "--header", "Authorization: "+te.authHeader(),
		"--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi")
	cmd.Dir = npmModules()
	cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(node)+string(os.PathListSeparator)+os.Getenv("PATH"))
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("inspector CLI: %v\n%s\n%s", err, out, stderr)
	}
	var res struct {
		Content []struct {
			Type, Text string
		} `json:"content"`
	}
	if err := json.Unmarshal(out, &res); err != nil {
		t.Fatalf("inspector output %q: %v", out, err)
	}
	if len(res.Content) != 1 || res.Content[0].Text != "Echo: hi" {
		t.Fatalf("tools/call echo through the tunnel = %+v", res)
	}
}
