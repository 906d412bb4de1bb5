package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// echoBindingPkg is the binding plugin -binding loads (the echo tool of the
// mcp-go echo server, as a Wasm plugin in the agent).
const echoBindingPkg = "./cmd/sluice-bench/testdata/echobinding"

// buildEchoBinding builds the echo binding plugin into the bench's temporary
// directory (run from the repository root, as make bench-load does).
func (b *bench) buildEchoBinding() (string, error) {
	out := filepath.Join(b.tmp, "echobinding.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-o", out, echoBindingPkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build %s (run sluice-bench from the repository root, or give -binding-wasm): %v\n%s", echoBindingPkg, err, msg)
	}
	return out, nil
}

// runBinding loads the echo tool served by a binding plugin through relay +
// agent (no chain) at every concurrency, and returns the results by
// concurrency, for the ratio against the same tool on an HTTP MCP server
// through the tunnel.
func (b *bench) runBinding(wasm string) (map[int]result, error) {
	if wasm == "" {
		var err error
		if wasm, err = b.buildEchoBinding(); err != nil {
			return nil, err
		}
	}
	b.bindingWasm = wasm
	defer func() { b.bindingWasm = "" }()
	mcpURL, relayCmd, agentCmd, err := b.startTunnel("", "none")
	if err != nil {
		return nil, err
	}
	idleAgent := rssKiB(agentCmd.Process.Pid)
	res := map[int]result{}
	for _, c := range b.levels {
		r, err := b.load("binding", "none", mcpURL, "", c)
		if err != nil {
			return nil, err
		}
		res[c] = r
	}
	fmt.Printf("memory (binding plugin): relay RSS %.1f MiB; agent RSS idle %.1f MiB, after load %.1f MiB (peak %.1f)\n",
		float64(rssKiB(relayCmd.Process.Pid))/1024, float64(idleAgent)/1024,
		float64(rssKiB(agentCmd.Process.Pid))/1024, float64(hwmKiB(agentCmd.Process.Pid))/1024)
	b.stopLast(2)
	return res, nil
}

// bindingYAML is the mcp.bindings section that serves main from the echo
// binding plugin (empty when the bench binds an HTTP server).
func (b *bench) bindingYAML() string {
	if b.bindingWasm == "" {
		return ""
	}
	return "mcp:\n  bindings:\n    - channel: main\n      wasm:\n        path: " + b.bindingWasm + "\n        limits: {call-timeout: 5s}\n"
}
