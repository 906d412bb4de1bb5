package host

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// Real guests in three toolchains, all behaving the same: method "echo" is
// replaced by itself with a header set, tools/call of "forbidden" is rejected,
// anything else continues.
func TestRealGuests(t *testing.T) {
	var logs enginetest.SyncBuffer
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(t), Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	tests := []struct {
		fixture string
		header  [2]string // header the echo sets ("" = none)
		abi     string
	}{
		{"cguest.wasm", [2]string{"X-Lang", "c"}, "native"},
		{"goguest.wasm", [2]string{}, "native"},
		{"extism-go.wasm", [2]string{"X-Team", "infra"}, "extism"},
	}
	for _, tt := range tests {
		t.Run(tt.fixture, func(t *testing.T) {
			s := load(t, r, PluginConfig{Name: tt.fixture, Path: fixture(tt.fixture), Config: map[string]any{"team": "infra"}, CallTimeout: 5 * time.Second})
			if _, isExtism := s.backend.(*extismBackend); isExtism != (tt.abi == "extism") {
				t.Fatalf("detected the wrong ABI (want %s)", tt.abi)
			}
			if !s.Wants(engine.HookRequest, "x") || !s.Wants(engine.HookResponse, "x") || s.Wants(engine.HookHTTPResponse, "") {
				t.Fatal("wants do not follow the plugin's description")
			}
			for i := 0; i < 3; i++ { // several calls on one instance
				res, err := handle(t, s, request("tools/list"))
				if err != nil || res.Action != engine.Continue {
					t.Fatalf("continue: %v %v", res.Action, err)
				}
			}
			m := request("echo")
			m.Body = json.RawMessage(`{"jsonrpc":"2.0","id":7,"method":"echo","params":{"s":"` + strings.Repeat("é", 2000) + `"}}`)
			res, err := handle(t, s, m)
			if err != nil {
				t.Fatal(err)
			}
			if res.Action != engine.Replace || !bytes.Equal(res.Body, m.Body) {
				t.Fatalf("echo: %v %.80s", res.Action, res.Body)
			}
			if tt.header[0] != "" {
				if got := res.Header.Get(tt.header[0]); got != tt.header[1] {
					t.Fatalf("header %s = %q, want %q (all %v)", tt.header[0], got, tt.header[1], res.Header)
				}
				if res.Header.Get("Mcp-Session-Id") != "s1" {
					t.Fatalf("header edits lost the original headers: %v", res.Header)
				}
			}
			if tt.fixture != "goguest.wasm" {
				m := request("tools/call")
				m.Tool = "forbidden"
				res, err := handle(t, s, m)
				if err != nil {
					t.Fatal(err)
				}
				if res.Action != engine.Reject || res.Error == nil || res.Error.Code != -32001 {
					t.Fatalf("forbidden: %+v", res)
				}
			}
			// A response message too.
			resp := &engine.Message{Hook: engine.HookResponse, Method: "echo", Status: http.StatusOK, Body: json.RawMessage(`{"jsonrpc":"2.0","id":7,"result":{}}`)}
			res, err = handle(t, s, resp)
			if err != nil || res.Action != engine.Replace || !bytes.Equal(res.Body, resp.Body) {
				t.Fatalf("response echo: %v %s %v", res.Action, res.Body, err)
			}
		})
	}
	if !strings.Contains(logs.String(), `"plugin":"extism-go.wasm"`) {
		t.Errorf("extism log not forwarded: %s", logs.String())
	}
}

func TestExtismMalformed(t *testing.T) {
	tests := []struct{ out, want string }{
		{`{"action":"explode"}`, "unknown action"},
		{`{"action":"replace","message":[1]}`, "not a single JSON object"},
		{`{"action":"respond"}`, "respond without a message"},
		{`{"action":"reject","error":"no"}`, "not a JSON-RPC error object"},
		{`{"action":"drop"}`, "not a notification"},
		{`not json`, "answer"},
	}
	for _, tt := range tests {
		t.Run(tt.want, func(t *testing.T) {
			if _, err := decodeExtismAnswer([]byte(tt.out), request("x")); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// toolchain skips (or, with SLUICE_REQUIRE_TOOLCHAINS=1, fails) when a
// command is missing.
func toolchain(t *testing.T, cmd string) string {
	t.Helper()
	p, err := exec.LookPath(cmd)
	if err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") == "1" {
			t.Fatalf("%s not found and SLUICE_REQUIRE_TOOLCHAINS=1", cmd)
		}
		t.Skipf("%s not found: install it (wabt, clang+lld, go) to rebuild this fixture", cmd)
	}
	return p
}

// TestFixturesUpToDate rebuilds every committed guest fixture from its source
// and compares bytes, so a fixture never drifts from its source.
func TestFixturesUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds guests")
	}
	root, err := filepath.Abs("..")
	if err != nil {
		t.Fatal(err)
	}
	wats, _ := filepath.Glob("testdata/*.wat")
	type build struct {
		name, tool, dir string
		args            []string
		env             []string
		out             string
	}
	var builds []build
	for _, w := range wats {
		name := strings.TrimSuffix(filepath.Base(w), ".wat")
		builds = append(builds, build{name: name + ".wasm", tool: "wat2wasm", dir: "testdata", args: []string{name + ".wat", "-o"}, out: name + ".wasm"})
	}
	builds = append(builds,
		build{name: "cguest.wasm", tool: "clang", dir: root, args: []string{"-O2", "--target=wasm32-unknown-unknown", "-mbulk-memory", "-nostdlib",
			"-Wl,--no-entry", "-Wl,--strip-all", "-I", "sdk", "examples/c/echo.c", "-o"}, out: "cguest.wasm"},
		build{name: "extism-c.wasm", tool: "clang", dir: "testdata", args: []string{"-O2", "--target=wasm32-unknown-unknown", "-mbulk-memory", "-nostdlib",
			"-Wl,--no-entry", "-Wl,--strip-all", "extism-c.c", "-o"}, out: "extism-c.wasm"},
		build{name: "goguest.wasm", tool: "go", dir: "testdata/goguest", args: []string{"build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o"},
			env: []string{"GOOS=wasip1", "GOARCH=wasm"}, out: "goguest.wasm"},
		build{name: "extism-go.wasm", tool: "go", dir: filepath.Join(root, "examples", "extism-go"), args: []string{"build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false", "-ldflags=-buildid=", "-o"},
			env: []string{"GOOS=wasip1", "GOARCH=wasm", "GOFLAGS=-mod=mod"}, out: "extism-go.wasm"},
	)
	for _, b := range builds {
		t.Run(b.name, func(t *testing.T) {
			tool := toolchain(t, b.tool)
			out := filepath.Join(t.TempDir(), b.out)
			args := append(append([]string(nil), b.args...), out)
			if b.tool == "go" {
				args = append(args, ".")
			}
			cmd := exec.Command(tool, args...)
			cmd.Dir = b.dir
			cmd.Env = append(os.Environ(), b.env...)
			if msg, err := cmd.CombinedOutput(); err != nil {
				var ee *exec.ExitError
				if errors.As(err, &ee) && b.name == "extism-go.wasm" && os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") != "1" {
					t.Skipf("cannot build the Extism guest (module download?): %s", msg)
				}
				t.Fatalf("%s %v: %v\n%s", tool, args, err, msg)
			}
			got, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			want, err := os.ReadFile(fixture(b.name))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("testdata/%s is stale: rebuild it as its source comment says", b.name)
			}
		})
	}
}

// sharedCacheDir is a compilation cache kept across test runs (outside the
// clone), so the big Go guests compile cold only once per machine.
func sharedCacheDir(t testing.TB) string {
	d := filepath.Join(os.TempDir(), "sluice-host-test-wazero")
	if err := os.MkdirAll(d, 0o700); err != nil {
		t.Fatal(err)
	}
	return d
}

func TestExtismTimeout(t *testing.T) {
	spinStopped(t, "extism-go.wasm", 300*time.Millisecond, "timeout")
}

// spinStopped loads the fixture with a cached compilation, calls its "spin"
// method (a loop that never ends), and checks the call fails as a timeout
// whose error contains want, and that the stage then serves "echo".
func spinStopped(t *testing.T, fixtureName string, timeout time.Duration, want string) *Stage {
	t.Helper()
	reg := prometheus.NewRegistry()
	r, err := NewRuntime(context.Background(), RuntimeOptions{CacheDir: sharedCacheDir(t), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = r.Close(context.Background()) })
	s := load(t, r, PluginConfig{Name: "spin", Path: fixture(fixtureName), CallTimeout: timeout, PoolSize: 1})
	_, err = handle(t, s, request("spin"))
	if !errors.Is(err, engine.ErrPluginFailure) || !strings.Contains(err.Error(), want) {
		t.Fatalf("err = %v, want a plugin failure containing %q", err, want)
	}
	if got := metricValue(r.metrics.failures.WithLabelValues("spin", kindTimeout)); got != 1 {
		t.Fatalf("timeouts = %v", got)
	}
	if res, err := handle(t, s, request("echo")); err != nil || res.Action != engine.Replace {
		t.Fatalf("next call: %v %v", res.Action, err)
	}
	return s
}
