package main

import (
	"bytes"
	"context"
	"embed"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"text/template"

	"github.com/spf13/pflag"
)

// pluginLangs are the languages `sluice plugin new` scaffolds.
var pluginLangs = []string{"go", "rust", "assemblyscript", "c"}

// pluginTemplates are the project skeletons of `sluice plugin new`. The C
// and Rust ones carry the SDK's sluice.h and sluice.rs, which go:embed
// cannot reach outside this directory: plugintemplates/c/sluice.h and
// plugintemplates/rust/sluice.rs are generated copies of sdk/sluice.h and
// sdk/sluice.rs. Edit the SDK's, then run `go generate ./cmd/sluice` (or
// `make generate`); TestPluginTemplatesCarrySDKFiles fails while a copy
// differs from its source.
//
//go:generate go test -count=1 -run ^TestPluginTemplatesCarrySDKFiles$ -update-sdk-copies .
//go:embed all:plugintemplates
var pluginTemplates embed.FS

const pluginUsage = `Usage:
  sluice plugin new NAME --lang go|rust|assemblyscript|c [--dir DIR]
                             scaffold a plugin project with one passing test
  sluice plugin build [DIR] [-o FILE.wasm]
                             build the project in DIR (default .) into NAME.wasm
  sluice plugin inspect FILE.wasm
                             ABI and version, hooks, imports (and which the host
                             refuses), exports, sizes, sha256
  sluice plugin test FILE.wasm --message MSG.json [--hook request|response]
                     [--method M] [--tool T] [--config KEY=VALUE]... [--expect ACTION]
                             run one message through the plugin as a pipeline
                             stage does; print the action, the result and the time

Docs: docs/plugins.md
`

// plugin runs `sluice plugin ...`.
func (c *cli) plugin(ctx context.Context, args []string) int {
	if len(args) == 0 {
		fmt.Fprint(c.stderr, pluginUsage)
		return exitConfig
	}
	var err error
	switch args[0] {
	case "new":
		err = c.pluginNew(args[1:])
	case "build":
		err = c.pluginBuild(ctx, args[1:])
	case "inspect":
		err = c.pluginInspect(ctx, args[1:])
	case "test":
		err = c.pluginTest(ctx, args[1:])
	case "help", "-h", "--help":
		fmt.Fprint(c.stdout, pluginUsage)
		return exitOK
	default:
		err = usageError{fmt.Errorf("unknown command %q", args[0])}
	}
	var ue usageError
	switch {
	case err == nil:
		return exitOK
	case errors.Is(err, pflag.ErrHelp):
		return exitOK
	case errors.As(err, &ue):
		fmt.Fprintf(c.stderr, "sluice plugin %s: %v\n\n%s", args[0], ue.err, pluginUsage)
		return exitConfig
	default:
		fmt.Fprintf(c.stderr, "sluice plugin %s: %v\n", args[0], err)
		return exitFailure
	}
}

// usageError is a mistake on the command line (exit 2 with the usage).
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }

// pluginFlags returns a flag set for `sluice plugin cmd` that reports errors
// as usage errors.
func (c *cli) pluginFlags(cmd string) *pflag.FlagSet {
	fs := pflag.NewFlagSet("sluice plugin "+cmd, pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.SetInterspersed(true)
	return fs
}

func parsePluginFlags(fs *pflag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

// pluginName is what a plugin project may be called: it becomes a Go module
// path, a file name and a JSON string without escaping.
var pluginName = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,63}$`)

// templateData is what the project templates see.
type templateData struct {
	Name string
	// SDKVersion is the Go module version of github.com/sluicemcp/sluice
	// matching this binary ("" for a development build: `go mod tidy`
	// then resolves the latest).
	SDKVersion string
}

// semver matches a release version a go.mod may require.
var semver = regexp.MustCompile(`^v[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?$`)

func (c *cli) pluginNew(args []string) error {
	fs := c.pluginFlags("new")
	lang := fs.String("lang", "", "language: "+strings.Join(pluginLangs, ", "))
	dir := fs.String("dir", "", "directory to create (default ./NAME)")
	if err := parsePluginFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{errors.New("want exactly one NAME")}
	}
	name := fs.Arg(0)
	if !pluginName.MatchString(name) {
		return usageError{fmt.Errorf("name %q: use 1-64 lowercase letters, digits, '-' or '_', starting with a letter", name)}
	}
	if !slices.Contains(pluginLangs, *lang) {
		return usageError{fmt.Errorf("--lang %q: want one of %s", *lang, strings.Join(pluginLangs, ", "))}
	}
	out := *dir
	if out == "" {
		out = name
	}
	if _, err := os.Stat(out); err == nil {
		return fmt.Errorf("%s already exists", out)
	}
	data := templateData{Name: name}
	if v, _ := buildVersion(); semver.MatchString(v) {
		data.SDKVersion = v
	}
	root := path.Join("plugintemplates", *lang)
	err := fs2walk(root, func(rel string, b []byte) error {
		dst := filepath.Join(out, filepath.FromSlash(strings.TrimSuffix(rel, ".tmpl")))
		if filepath.Base(dst) == "gitignore" {
			dst = filepath.Join(filepath.Dir(dst), ".gitignore")
		}
		if strings.HasSuffix(rel, ".tmpl") {
			t, err := template.New(rel).Option("missingkey=error").Parse(string(b))
			if err != nil {
				return err
			}
			var buf bytes.Buffer
			if err := t.Execute(&buf, data); err != nil {
				return err
			}
			b = buf.Bytes()
		}
		if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
			return err
		}
		return os.WriteFile(dst, b, 0o644)
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", out, err)
	}
	fmt.Fprintf(c.stdout, "created %s (%s); next: see %s\n", out, *lang, filepath.Join(out, "README.md"))
	return nil
}

// fs2walk calls f with every embedded file under root, by path relative to
// root.
func fs2walk(root string, f func(rel string, b []byte) error) error {
	return fs.WalkDir(pluginTemplates, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := pluginTemplates.ReadFile(p)
		if err != nil {
			return err
		}
		return f(strings.TrimPrefix(p, root+"/"), b)
	})
}

// toolFromEnv returns the command for a toolchain: $ENV when set, else def.
func toolFromEnv(env, def string) string {
	if v := os.Getenv(env); v != "" {
		return v
	}
	return def
}

// projectLang tells a project's language from the files `sluice plugin new`
// writes.
func projectLang(dir string) (string, error) {
	has := func(name string) bool {
		_, err := os.Stat(filepath.Join(dir, name))
		return err == nil
	}
	switch {
	case has("go.mod"):
		return "go", nil
	case has("lib.rs"):
		return "rust", nil
	case has("plugin.ts") && has("package.json"):
		return "assemblyscript", nil
	case has("plugin.c"):
		return "c", nil
	}
	return "", fmt.Errorf("%s: no plugin project here (looked for go.mod, lib.rs, plugin.ts + package.json, plugin.c)", dir)
}

func (c *cli) pluginBuild(ctx context.Context, args []string) error {
	fs := c.pluginFlags("build")
	out := fs.StringP("output", "o", "", "module to write (default DIR/NAME.wasm, NAME the directory's name)")
	if err := parsePluginFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 1 {
		return usageError{errors.New("want at most one DIR")}
	}
	dir := "."
	if fs.NArg() == 1 {
		dir = fs.Arg(0)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return err
	}
	lang, err := projectLang(abs)
	if err != nil {
		return err
	}
	dst := *out
	if dst == "" {
		dst = filepath.Join(abs, filepath.Base(abs)+".wasm")
	}
	if dst, err = filepath.Abs(dst); err != nil {
		return err
	}
	var cmd *exec.Cmd
	switch lang {
	case "go":
		cmd = exec.CommandContext(ctx, toolFromEnv("GO", "go"), "build", "-buildmode=c-shared", "-trimpath", "-buildvcs=false",
			"-ldflags=-s -w -buildid=", "-o", dst, ".")
		cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0")
	case "rust":
		cmd = exec.CommandContext(ctx, toolFromEnv("RUSTC", "rustc"), "--target", "wasm32-unknown-unknown", "--crate-type", "cdylib",
			"-O", "-C", "strip=symbols", "lib.rs", "-o", dst)
	case "assemblyscript":
		asc := filepath.Join(abs, "node_modules", "assemblyscript", "bin", "asc.js")
		if _, err := os.Stat(asc); err != nil {
			return fmt.Errorf("%s: assemblyscript is not installed: run npm install there first", dir)
		}
		cmd = exec.CommandContext(ctx, toolFromEnv("NODE", "node"), asc, "plugin.ts", "--use", "abort=plugin/abort", "-O3", "--noAssert", "-o", dst)
	case "c":
		cmd = exec.CommandContext(ctx, toolFromEnv("CLANG", "clang"), "-O2", "--target=wasm32-unknown-unknown", "-mbulk-memory", "-nostdlib",
			"-Wl,--no-entry", "-Wl,--strip-all", "-I", ".", "-o", dst, "plugin.c")
	}
	cmd.Dir = abs
	cmd.Stdout, cmd.Stderr = c.stderr, c.stderr
	if err := cmd.Run(); err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return fmt.Errorf("%s build failed (%s): %v", lang, strings.Join(cmd.Args, " "), err)
		}
		return fmt.Errorf("%s build: %w", lang, err)
	}
	fmt.Fprintf(c.stdout, "built %s (%s)\n", dst, lang)
	return nil
}
