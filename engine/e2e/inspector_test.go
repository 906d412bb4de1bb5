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
// inspector CLI (optional npm package: skipped when it did not install).
func TestInspectorCLI(t *testing.T) {
	// Optional even in CI: the inspector is deprecated upstream and its
	// install may be dropped without failing the e2e suite.
	if _, err := os.Stat(inspectorCLIJS()); err != nil {
		t.Skipf("optional inspector CLI not installed (%s); .ci/deps.sh installs it when it can", inspectorCLIJS())
	}
	node := node20(t)
	serverURL, _ := startServerEverything(t)
	h := newHarness(t, harnessOptions{tunnels: []tunnelSpec{{serverURL: serverURL}}})
	te := h.tunnel(0)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// build/index.js is the CLI proper (build/cli.js only forwards to it); it
	// finds its own package.json relative to the working directory.
	cmd := exec.CommandContext(ctx, node, "index.js", te.mcpURL,
		"--transport", "http", "--method", "tools/call", "--tool-name", "echo", "--tool-arg", "message=hi",
		"--header", "Authorization: "+te.authHeader())
	cmd.Dir = filepath.Dir(inspectorCLIJS())
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
