package filters

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Langs are the example languages, with the ABI each uses.
var Langs = []struct{ Name, ABI string }{
	{"go", "native"},
	{"c", "native"},
	{"rust", "native"},
	{"wat", "native"},
	{"assemblyscript", "extism"},
}

// built maps a language to its module in buildDir, or to why it is missing.
var (
	buildDir string
	built    = map[string]string{}
	missing  = map[string]string{}
)

// TestMain builds every example once for all tests and benchmarks.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "sluice-filters-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	buildDir = dir
	for _, l := range Langs {
		cmd := exec.Command("bash", filepath.Join("..", "build.sh"), dir, l.Name)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		switch {
		case err == nil:
			built[l.Name] = filepath.Join(dir, l.Name+"-filter.wasm")
		case errors.As(err, &ee) && ee.ExitCode() == 3:
			missing[l.Name] = strings.TrimSpace(string(out))
		default:
			missing[l.Name] = "build failed: " + err.Error() + "\n" + string(out)
			missing[l.Name+"!"] = "fatal"
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// module returns the built module of lang; a language whose toolchain is
// missing skips the test (fails with SLUICE_REQUIRE_TOOLCHAINS=1), and one
// that failed to build fails it.
func module(t testing.TB, lang string) string {
	t.Helper()
	if p, ok := built[lang]; ok {
		return p
	}
	if missing[lang+"!"] != "" || os.Getenv("SLUICE_REQUIRE_TOOLCHAINS") == "1" {
		t.Fatalf("%s filter: %s", lang, missing[lang])
	}
	t.Skipf("%s filter: %s", lang, missing[lang])
	return ""
}

// runBuild runs examples/build.sh into a temporary directory with extra
// environment and returns its output and exit status.
func runBuild(t *testing.T, env []string, langs ...string) (string, int) {
	t.Helper()
	bash, err := exec.LookPath("bash")
	if err != nil {
		t.Fatal("bash not found: examples/build.sh needs it")
	}
	cmd := exec.Command(bash, append([]string{filepath.Join("..", "build.sh"), t.TempDir()}, langs...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return string(out), 0
}
