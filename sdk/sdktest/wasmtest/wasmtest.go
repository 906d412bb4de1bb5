package wasmtest

import (
	"context"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/host"
	"github.com/sluicemcp/sluice/sdk"
)

// Load compiles the module at path with cfg as its plugin config and returns
// the stage; it is closed when the test ends.
func Load(t testing.TB, path string, cfg map[string]any) *host.Stage {
	t.Helper()
	mod, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("wasmtest: read module: %v", err)
	}
	return LoadModule(t, filepath.Base(path), mod, cfg)
}

// LoadModule is Load for a module already in memory (an embedded plugin).
func LoadModule(t testing.TB, name string, mod []byte, cfg map[string]any) *host.Stage {
	t.Helper()
	return LoadConfig(t, host.PluginConfig{Name: name, Module: mod, Config: cfg})
}

// LoadConfig loads a module with a full host configuration (limits, trust)
// in a fresh runtime that is closed when the test ends.
func LoadConfig(t testing.TB, pc host.PluginConfig) *host.Stage {
	t.Helper()
	ctx := context.Background()
	st, err := newRuntime(t).Load(ctx, pc)
	if err != nil {
		t.Fatalf("wasmtest: %v", err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newRuntime returns a fresh runtime, closed when the test ends.
func newRuntime(t testing.TB) *host.Runtime {
	t.Helper()
	ctx := context.Background()
	rt, err := host.NewRuntime(ctx, host.RuntimeOptions{CacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("wasmtest: new runtime: %v", err)
	}
	t.Cleanup(func() { _ = rt.Close(ctx) })
	return rt
}

// Handle runs msg through an open exchange of st and returns the host's view of
// the plugin's verdict.
func Handle(t testing.TB, st *host.Stage, msg sdk.Message) (engine.Result, error) {
	t.Helper()
	ctx := context.Background()
	f, err := st.Open(ctx)
	if err != nil {
		t.Fatalf("wasmtest: open: %v", err)
	}
	defer f.Close()
	em := ToEngine(msg)
	return f.Handle(ctx, &em)
}

// Run loads the module at path with cfg and handles one message.
func Run(t testing.TB, path string, cfg map[string]any, msg sdk.Message) (engine.Result, error) {
	t.Helper()
	return Handle(t, Load(t, path, cfg), msg)
}

// ToEngine converts an sdk.Message (Hook 0 = request) to the engine's form.
func ToEngine(m sdk.Message) engine.Message {
	if m.Hook == 0 {
		m.Hook = sdk.HookRequest
	}
	em := engine.Message{
		Hook: engine.Hook(m.Hook), Side: engine.SideAgent, Tunnel: m.Tunnel, Channel: m.Channel,
		SessionID: m.SessionID, RequestID: m.RequestID, Method: m.Method, Tool: m.Tool,
		Caller: m.Caller, Status: m.Status, Body: m.Body, Notification: m.Notification,
		Header: http.Header{},
	}
	if m.Side == sdk.SideRelay {
		em.Side = engine.SideRelay
	}
	for _, h := range m.Headers {
		em.Header.Add(h.Name, h.Value)
	}
	return em
}

// Build compiles the wasip1 plugin package pkg (a path or import path) into a
// temporary .wasm with the first-party build flags and returns its path. It
// skips the test in -short mode (a build takes tens of seconds cold).
func Build(t testing.TB, pkg string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("wasmtest: building a wasm module is slow; skipped in -short mode")
	}
	out := filepath.Join(t.TempDir(), "plugin.wasm")
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-s -buildid=", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("wasmtest: build %s: %v\n%s", pkg, err, b)
	}
	return out
}
