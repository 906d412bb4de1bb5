package enginetest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestBuilds: a build runs once however often it is asked for, its file is
// where Build says, a failed build is reported with its command's output
// and remembered, a command that writes nothing is a failure, and Remove
// deletes every build.
func TestBuilds(t *testing.T) {
	var b Builds
	runs := 0
	write := func(content string) func(string) *exec.Cmd {
		return func(out string) *exec.Cmd {
			runs++
			return exec.Command("sh", "-c", `printf %s "$1" > "$2"`, "sh", content, out)
		}
	}
	p, err := b.Build("a.wasm", write("first"))
	if err != nil {
		t.Fatal(err)
	}
	if again, err := b.Build("a.wasm", write("second")); err != nil || again != p {
		t.Fatalf("second Build: %q %v, want %q", again, err, p)
	}
	if got, _ := os.ReadFile(p); string(got) != "first" || runs != 1 || filepath.Base(p) != "a.wasm" {
		t.Errorf("built %q into %s in %d runs, want \"first\" into a.wasm in one", got, p, runs)
	}

	fail := func(out string) *exec.Cmd {
		runs++
		return exec.Command("sh", "-c", "echo no toolchain >&2; exit 3")
	}
	runs = 0
	for range 2 {
		if _, err := b.Build("bad.wasm", fail); err == nil || !strings.Contains(err.Error(), "build bad.wasm: ") || !strings.Contains(err.Error(), "no toolchain") {
			t.Errorf("failed build: %v, want the name and the command's output", err)
		}
	}
	if runs != 1 {
		t.Errorf("a failed build ran %d times, want once", runs)
	}
	if _, err := b.Build("none.wasm", func(string) *exec.Cmd { return exec.Command("true") }); err == nil || !strings.Contains(err.Error(), "wrote nothing") {
		t.Errorf("a build that writes nothing: %v", err)
	}

	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Dir(p)); !os.IsNotExist(err) {
		t.Errorf("after Remove: %v, want the directory gone", err)
	}
	runs = 0
	if p2, err := b.Build("a.wasm", write("third")); err != nil || runs != 1 {
		t.Errorf("Build after Remove: %q %v in %d runs, want a new build", p2, err, runs)
	}
	if err := b.Remove(); err != nil {
		t.Fatal(err)
	}
}
