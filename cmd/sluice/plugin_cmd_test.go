package main

import (
	"bytes"
	"context"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// runPlugin runs `sluice plugin args...` in process and returns its exit
// code, stdout and stderr.
func runPlugin(t testing.TB, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	c := &cli{stdout: &out, stderr: &errb}
	code := c.main(context.Background(), append([]string{"plugin"}, args...))
	return code, out.String(), errb.String()
}

// needTool skips (or, with SLUICE_REQUIRE_TOOLCHAINS=1, fails) when a
// toolchain command is missing, and returns its path.
func needTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") == "1" {
			t.Fatalf("%s not found and SLUICE_REQUIRE_TOOLCHAINS=1", name)
		}
		t.Skipf("%s not found", name)
	}
	return p
}

func runIn(t testing.TB, dir string, env []string, name string, args ...string) {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// newBuildTest is what a plugin author does: `sluice plugin new` in dir
// (outside the repository), the language's own setup and test, `sluice
// plugin build`, and `sluice plugin test` of the project's test message,
// which must pass. It returns the module and the message.
func newBuildTest(t testing.TB, lang, dir string) (mod, msg string) {
	t.Helper()
	switch lang {
	case "go":
		needTool(t, "go")
	case "c":
		t.Setenv("CLANG", needTool(t, "clang"))
	case "rust":
		rustc := "/usr/bin/rustc" // Debian's, with the wasm32 std (a rustup rustc earlier on PATH may lack it)
		if _, err := os.Stat(rustc); err != nil {
			rustc = needTool(t, "rustc")
		}
		t.Setenv("RUSTC", rustc)
	case "assemblyscript":
		needTool(t, "node")
	}
	if code, out, errb := runPlugin(t, "new", "myplug", "--lang", lang, "--dir", dir); code != 0 || !strings.Contains(out, "created "+dir) {
		t.Fatalf("new: exit %d\n%s%s", code, out, errb)
	}
	switch lang {
	case "go":
		// The module is not published here: point the SDK at this
		// checkout (a user runs `go mod tidy` against the proxy).
		runIn(t, dir, nil, "go", "mod", "edit", "-replace", "github.com/sluicemcp/sluice="+repoRoot(t))
		runIn(t, dir, nil, "go", "mod", "tidy")
		runIn(t, dir, nil, "go", "test", "./...")
	case "rust":
		runIn(t, dir, nil, os.Getenv("RUSTC"), "--test", "lib.rs", "-o", "unit-test")
		runIn(t, dir, nil, filepath.Join(dir, "unit-test"))
	case "assemblyscript":
		nm := filepath.Join(os.Getenv("SLUICE_TOOLS_DIR"), "npm", "node_modules")
		if os.Getenv("SLUICE_TOOLS_DIR") == "" {
			home, _ := os.UserHomeDir()
			nm = filepath.Join(home, ".cache", "sluice", "npm", "node_modules")
		}
		if _, err := os.Stat(filepath.Join(nm, "assemblyscript")); err != nil {
			if os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") == "1" {
				t.Fatalf("assemblyscript not installed in %s (.ci/deps.sh)", nm)
			}
			t.Skipf("assemblyscript not installed in %s (.ci/deps.sh)", nm)
		}
		// What `npm install` gives, from the packages .ci/deps.sh installed.
		if err := os.Symlink(nm, filepath.Join(dir, "node_modules")); err != nil {
			t.Fatal(err)
		}
	}
	if code, out, errb := runPlugin(t, "build", dir); code != 0 || !strings.Contains(out, "built "+filepath.Join(dir, "myplug.wasm")) {
		t.Fatalf("build: exit %d\n%s%s", code, out, errb)
	}
	mod = filepath.Join(dir, "myplug.wasm")
	msg = filepath.Join(dir, "testdata", "request.json")
	code, out, errb := runPlugin(t, "test", mod, "--message", msg, "--config", `block=["delete_file"]`, "--expect", "reject")
	if code != 0 || !strings.Contains(out, "action:   reject\n") || !strings.Contains(out, `error:    {"code":-32001,"message":"tool blocked by policy"}`) ||
		!strings.Contains(out, "time:     first call ") {
		t.Fatalf("test: exit %d\n%s%s", code, out, errb)
	}
	if !strings.Contains(errb, `msg="blocked a tool" plugin=myplug request_id=sluice-plugin-test method=tools/call`) {
		t.Errorf("the plugin's log line is missing from stderr:\n%s", errb)
	}
	return mod, msg
}

// TestPluginNewBuildTest scaffolds, builds and tests a project per
// language, then checks the other answer and inspect.
func TestPluginNewBuildTest(t *testing.T) {
	if testing.Short() {
		t.Skip("builds plugins")
	}
	for _, lang := range pluginLangs {
		t.Run(lang, func(t *testing.T) {
			mod, msg := newBuildTest(t, lang, filepath.Join(t.TempDir(), "myplug"))
			code, out, errb := runPlugin(t, "test", mod, "--message", msg, "--config", `block=["drop_table"]`, "--expect", "reject")
			if code != 1 || !strings.Contains(out, "action:   continue\n") || errb != "sluice plugin test: expected action reject, got continue\n" {
				t.Fatalf("test, tool not blocked: exit %d\n%s%s", code, out, errb)
			}
			code, out, errb = runPlugin(t, "inspect", mod)
			if code != 0 || !strings.Contains(out, "plugin:   myplug 0.1.0\n") || !strings.Contains(out, "config:   block\n") || !strings.Contains(out, "status:   loads\n") {
				t.Fatalf("inspect: exit %d\n%s%s", code, out, errb)
			}
		})
	}
}

// BenchmarkPluginNewToTest measures `sluice plugin new` to a passing
// `sluice plugin test` per language, as newBuildTest does it (Go including
// go mod tidy and go test), on a warm build cache.
func BenchmarkPluginNewToTest(b *testing.B) {
	for _, lang := range pluginLangs {
		b.Run(lang, func(b *testing.B) {
			for b.Loop() {
				newBuildTest(b, lang, filepath.Join(b.TempDir(), "myplug"))
			}
		})
	}
}

// TestPluginInspect: a good module's report, and modules the host refuses
// (a missing export, a forbidden import) with the exact error.
func TestPluginInspect(t *testing.T) {
	code, out, errb := runPlugin(t, "inspect", hostFixture(t, "cguest.wasm"))
	for _, want := range []string{
		"size:     ", "sha256:   ", "abi:      native (version 1)\n", "plugin:   c-echo 1.0.0\n", "hooks:    request, response\n",
		"methods:  (all)\n", "config:   (keys not declared)\n", "imports:  1\n",
		"  sluice.log                               (i32, i32, i32) -> ()    ok\n",
		"  sluice_on_request                        (i32, i32) -> (i64)\n", "status:   loads\n",
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("inspect cguest.wasm: exit %d, missing %q in\n%s%s", code, want, out, errb)
		}
	}
	for _, tt := range []struct{ fixture, stdout, stderr string }{
		{"noexport.wasm", "status:   refused\n",
			"sluice plugin inspect: host: load plugin \"noexport\": missing export sluice_on_request\n"},
		{"forbidden.wasm", "REFUSED: forbidden import env.abort (a plugin may import only sluice and wasi_snapshot_preview1)\n",
			"sluice plugin inspect: host: load plugin \"forbidden\": forbidden import env.abort (a plugin may import only sluice and wasi_snapshot_preview1)\n"},
		{"extismabort.wasm", "abi:      extism\n",
			"sluice plugin inspect: host: load plugin \"extismabort\": forbidden import env.abort (an Extism plugin may import only extism:host/env, extism:host/user and wasi_snapshot_preview1; build AssemblyScript with --use abort=FILE/FUNCTION)\n"},
	} {
		code, out, errb := runPlugin(t, "inspect", hostFixture(t, tt.fixture))
		if code != exitFailure || !strings.Contains(out, tt.stdout) || errb != tt.stderr {
			t.Fatalf("inspect %s: exit %d\nstdout:\n%s\nstderr: %q\nwant:   %q", tt.fixture, code, out, errb, tt.stderr)
		}
	}
}

// TestPluginTestErrors: each mistake gets its own message.
func TestPluginTestErrors(t *testing.T) {
	dir := t.TempDir()
	msg := filepath.Join(dir, "m.json")
	if err := os.WriteFile(msg, []byte(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"x"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	bad := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(bad, []byte(`[1]`), 0o600); err != nil {
		t.Fatal(err)
	}
	keys := hostFixture(t, "configkeys.wasm")
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{keys, "--message", msg, "--config", "colour=red"}, exitFailure,
			"sluice plugin test: host: load plugin \"configkeys\": unknown config key \"colour\" (the plugin accepts block, tag)\n"},
		{[]string{keys, "--message", msg, "--config", "colour"}, exitConfig, "sluice plugin test: --config \"colour\": want KEY=VALUE\n"},
		{[]string{keys}, exitConfig, "sluice plugin test: --message is required\n"},
		{[]string{keys, "--message", msg, "--hook", "response"}, exitConfig,
			"sluice plugin test: --hook response needs --method (a response carries no method)\n"},
		{[]string{keys, "--message", msg, "--hook", "sideways"}, exitConfig, "sluice plugin test: --hook \"sideways\": want request or response\n"},
		{[]string{keys, "--message", msg, "--expect", "accept"}, exitConfig,
			"sluice plugin test: --expect \"accept\": want one of continue, replace, respond, reject, drop\n"},
		{[]string{keys, "--message", bad}, exitFailure, "sluice plugin test: " + bad + ": not one JSON object\n"},
		{[]string{filepath.Join(dir, "none.wasm"), "--message", msg}, exitFailure,
			"sluice plugin test: host: load plugin \"none\": read module: stat " + filepath.Join(dir, "none.wasm") + ": no such file or directory\n"},
	} {
		code, _, errb := runPlugin(t, append([]string{"test"}, tt.args...)...)
		if code != tt.code || !strings.HasPrefix(errb, tt.stderr) {
			t.Fatalf("test %q: exit %d, stderr %q, want %d %q", tt.args, code, errb, tt.code, tt.stderr)
		}
	}
	// A plugin that is not called for the message says so.
	code, out, errb := runPlugin(t, "test", keys, "--message", msg, "--config", "tag=x")
	if code != 0 || !strings.Contains(out, "action:   continue\n") {
		t.Fatalf("exit %d\n%s%s", code, out, errb)
	}
}

// TestPluginNewErrors: names, languages and existing directories.
func TestPluginNewErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct {
		args   []string
		code   int
		stderr string
	}{
		{[]string{"new", "My Plugin", "--lang", "go"}, exitConfig, "sluice plugin new: name \"My Plugin\": use 1-64 lowercase letters, digits, '-' or '_', starting with a letter\n"},
		{[]string{"new", "p", "--lang", "zig"}, exitConfig, "sluice plugin new: --lang \"zig\": want one of go, rust, assemblyscript, c\n"},
		{[]string{"new", "p", "--lang", "c", "--dir", dir}, exitFailure, "sluice plugin new: " + dir + " already exists\n"},
		{[]string{"build", dir}, exitFailure, "sluice plugin build: " + dir + ": no plugin project here (looked for go.mod, lib.rs, plugin.ts + package.json, plugin.c)\n"},
		{[]string{"frobnicate"}, exitConfig, "sluice plugin frobnicate: unknown command \"frobnicate\"\n"},
	} {
		code, _, errb := runPlugin(t, tt.args...)
		if code != tt.code || !strings.HasPrefix(errb, tt.stderr) {
			t.Fatalf("%q: exit %d, stderr %q, want %d %q", tt.args, code, errb, tt.code, tt.stderr)
		}
	}
}

// updateSDKCopies makes TestPluginTemplatesCarrySDKFiles write the
// templates' copies of the SDK files (go generate ./cmd/sluice runs it so).
var updateSDKCopies = flag.Bool("update-sdk-copies", false, "rewrite plugintemplates' copies of the SDK files from sdk/")

// sdkCopies maps each SDK file a template carries (relative to the
// repository root) to its copy under cmd/sluice.
var sdkCopies = map[string]string{
	"sdk/sluice.h":  "plugintemplates/c/sluice.h",
	"sdk/sluice.rs": "plugintemplates/rust/sluice.rs",
}

// TestPluginTemplatesCarrySDKFiles: the C and Rust templates carry the
// SDK's sluice.h and sluice.rs byte for byte, as embedded in the binary; an
// SDK edit without `go generate ./cmd/sluice` fails here. With
// -update-sdk-copies it first rewrites the copies.
func TestPluginTemplatesCarrySDKFiles(t *testing.T) {
	for src, dst := range sdkCopies {
		want, err := os.ReadFile(filepath.Join("..", "..", filepath.FromSlash(src)))
		if err != nil {
			t.Fatal(err)
		}
		if *updateSDKCopies {
			if err := os.WriteFile(filepath.FromSlash(dst), want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue // the embedded copy is the old one until the next build
		}
		got, err := pluginTemplates.ReadFile(dst)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("cmd/sluice/%s differs from %s: run go generate ./cmd/sluice", dst, src)
		}
	}
}
