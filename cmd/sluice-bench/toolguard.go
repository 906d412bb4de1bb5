package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// toolguardTools is the size of the policy and of the pin set the bench
// gives toolguard: the bar is "a 100-tool policy and pins".
const toolguardTools = 100

// toolguardConfig returns the toolguard config the bench runs, as JSON
// (valid YAML): a policy of toolguardTools rules that the echo tool meets
// last (each rule names other tools), default deny, and a pin set of
// toolguardTools tools: the echo tool's real pin, taken with `sluice tools
// pin` from the running echo server, and synthetic ones.
func (b *bench) toolguardConfig(echoURL string) (string, error) {
	out, err := exec.Command(b.bin, "tools", "pin", "--url", echoURL).Output()
	if err != nil {
		return "", fmt.Errorf("sluice tools pin: %w", err)
	}
	var doc struct {
		Version int               `json:"version"`
		Tools   map[string]string `json:"tools"`
	}
	if err := json.Unmarshal(out, &doc); err != nil || doc.Tools["echo"] == "" {
		return "", fmt.Errorf("sluice tools pin printed no pin for echo: %v\n%s", err, out)
	}
	for i := len(doc.Tools); i < toolguardTools; i++ {
		doc.Tools[fmt.Sprintf("tool_%03d", i)] = "sha256:" + strings.Repeat(fmt.Sprintf("%02x", i%256), 32)
	}
	pins, _ := json.Marshal(doc)
	pinsFile := filepath.Join(b.tmp, "pins.json")
	if err := os.WriteFile(pinsFile, pins, 0o600); err != nil {
		return "", err
	}
	var policy []map[string]any
	for i := 0; i < toolguardTools-1; i++ {
		policy = append(policy, map[string]any{"name": fmt.Sprintf("deny-%03d", i), "action": "deny",
			"tools": []string{fmt.Sprintf("tool_%03d", i), fmt.Sprintf("tool_%03d_*", i)}})
	}
	policy = append(policy, map[string]any{"name": "allow-echo", "action": "allow", "tools": []string{"echo"}})
	cfg, _ := json.Marshal(map[string]any{
		"default": "deny",
		"policy":  policy,
		"pins":    map[string]any{"learn": false, "sets": []any{map[string]any{"from": "file:" + pinsFile}}},
	})
	return string(cfg), nil
}

// listTools lists the tools through the tunnel once, so toolguard has seen
// (and verified against its pins) the definition every call then checks.
func (b *bench) listTools(mcpURL string) error {
	c := newClient(mcpURL, 1)
	// The agent is ready before the relay has seen its first poll: retry
	// the 503 that answers meanwhile.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := c.initialize()
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "HTTP 503") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
	st, body, _, err := c.post([]byte(`{"jsonrpc":"2.0","id":1,"method":"tools/list","params":{}}`))
	if err != nil {
		return err
	}
	if st != 200 || !strings.Contains(string(body), `"name":"echo"`) {
		return fmt.Errorf("tools/list through the tunnel: HTTP %d: %s", st, trunc(body))
	}
	return nil
}
