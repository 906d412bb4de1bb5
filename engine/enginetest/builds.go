package enginetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Builds holds what a test binary builds once for all of its tests (a Wasm
// guest, an example plugin), by name, in one temporary directory. The zero
// value is ready to use; TestMain runs the tests with Run, which removes
// the builds afterwards.
type Builds struct {
	// Prefix names the temporary directory (os.MkdirTemp's pattern;
	// "" = "sluice-test-builds-").
	Prefix string

	mu   sync.Mutex
	dir  string
	done map[string]build
}

type build struct {
	path string
	err  error
}

// Path returns the file name was built into, building it first when no
// test has asked for it yet: command(out) is the command that writes it
// to out. It fails t when that build failed (now or for an earlier test).
func (b *Builds) Path(t testing.TB, name string, command func(out string) *exec.Cmd) string {
	t.Helper()
	p, err := b.Build(name, command)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Build is Path without a test: it returns the file name was built into,
// or why it could not be built. A build runs once, failed or not; later
// calls for the same name return its outcome.
func (b *Builds) Build(name string, command func(out string) *exec.Cmd) (string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if r, ok := b.done[name]; ok {
		return r.path, r.err
	}
	r := b.run(name, command)
	if b.done == nil {
		b.done = map[string]build{}
	}
	b.done[name] = r
	return r.path, r.err
}

func (b *Builds) run(name string, command func(out string) *exec.Cmd) build {
	if b.dir == "" {
		prefix := b.Prefix
		if prefix == "" {
			prefix = "sluice-test-builds-"
		}
		dir, err := os.MkdirTemp("", prefix)
		if err != nil {
			return build{err: fmt.Errorf("build %s: %w", name, err)}
		}
		b.dir = dir
	}
	out := filepath.Join(b.dir, name)
	cmd := command(out)
	if msg, err := cmd.CombinedOutput(); err != nil {
		return build{err: fmt.Errorf("build %s: %s: %v\n%s", name, strings.Join(cmd.Args, " "), err, msg)}
	}
	if _, err := os.Stat(out); err != nil {
		return build{err: fmt.Errorf("build %s: %s wrote nothing: %w", name, strings.Join(cmd.Args, " "), err)}
	}
	return build{path: out}
}

// Run runs m's tests and then removes everything built: TestMain's
// os.Exit(builds.Run(m)).
func (b *Builds) Run(m *testing.M) int {
	code := m.Run()
	_ = b.Remove()
	return code
}

// Remove deletes everything built; a later Build starts afresh.
func (b *Builds) Remove() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	dir := b.dir
	b.dir, b.done = "", nil
	if dir == "" {
		return nil
	}
	return os.RemoveAll(dir)
}
