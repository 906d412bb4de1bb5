package main

// Checks over the repository's own documents and tests: links resolve,
// config keys named in docs exist, and no test skips where CI must run it.

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"reflect"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"testing"
)

// repoRoot is the repository's top directory.
func repoRoot(t testing.TB) string {
	t.Helper()
	_, self, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(self), "..", ".."))
}

// repoFiles lists the repository's files whose names end in suffix,
// relative to the root, skipping .git, node_modules and testdata.
func repoFiles(t testing.TB, suffix string) []string {
	t.Helper()
	root := repoRoot(t)
	var out []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "node_modules", "testdata", "bin", ".tools":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, suffix) {
			rel, _ := filepath.Rel(root, p)
			out = append(out, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

var (
	mdLink    = regexp.MustCompile(`\]\(([^)\s]+)\)`)
	mdHeading = regexp.MustCompile(`(?m)^#{1,6}\s+(.+?)\s*$`)
	codeSpan  = regexp.MustCompile("`([^`\n]+)`")
	fence     = regexp.MustCompile("(?ms)^```.*?^```")
)

// anchors returns the GitHub heading anchors of a Markdown document.
func anchors(doc string) map[string]bool {
	out := map[string]bool{}
	for _, m := range mdHeading.FindAllStringSubmatch(fence.ReplaceAllString(doc, ""), -1) {
		var b strings.Builder
		for _, r := range strings.ToLower(strings.ReplaceAll(m[1], "`", "")) {
			switch {
			case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
				b.WriteRune(r)
			case r == ' ':
				b.WriteByte('-')
			}
		}
		out[b.String()] = true
	}
	return out
}

// TestDocLinks: every relative link in the repository's Markdown files
// (README.md, docs/, sdk/, every RATIONALE.md, …) names a file inside the
// repository, and its #anchor a heading of that file; and none points at, or
// names, the project-internal documents beside the repository.
func TestDocLinks(t *testing.T) {
	root := repoRoot(t)
	docs := repoFiles(t, ".md")
	for _, must := range []string{"README.md", "docs/configuration.md", "sdk/ABI.md", "host/RATIONALE.md"} {
		if !slices.Contains(docs, must) {
			t.Fatalf("%s not among the checked documents", must)
		}
	}
	internal := regexp.MustCompile(`\b(DESIGN|WIRE|MCP|CONVENTIONS|TESTING|STYLE)\.md\b|\.\./shared\b`)
	for _, doc := range docs {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		if m := internal.FindString(text); m != "" {
			t.Errorf("%s mentions %s, which is not in the repository", doc, m)
		}
		for _, m := range mdLink.FindAllStringSubmatch(fence.ReplaceAllString(text, ""), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			full := filepath.Join(root, filepath.Dir(doc), path)
			if path == "" {
				full = filepath.Join(root, doc)
			}
			rel, err := filepath.Rel(root, full)
			if err != nil || strings.HasPrefix(rel, "..") {
				t.Errorf("%s: link %s leaves the repository", doc, target)
				continue
			}
			st, err := os.Stat(full)
			if err != nil {
				t.Errorf("%s: link %s: %v", doc, target, err)
				continue
			}
			if anchor != "" && !st.IsDir() {
				linked, _ := os.ReadFile(full)
				if !anchors(string(linked))[anchor] {
					t.Errorf("%s: link %s: no heading #%s in %s", doc, target, anchor, rel)
				}
			}
		}
	}
}

// TestDocConfigKeys: every config key the docs, koanf.yaml and the help
// topics name (`relay.public-url`, `--control-plane.tunnel-id`,
// `limits.call-timeout`, …) is a key of the Config type.
func TestDocConfigKeys(t *testing.T) {
	root := repoRoot(t)
	known := map[string]bool{}
	for _, k := range configKeys() {
		known[k] = true
	}
	// Removed keys are named where their removal is explained.
	for k := range removedKeys {
		known[k] = true
	}
	// Keys of a pipeline entry and of a tunnel, named on their own.
	for _, k := range leafKeys(reflect.TypeFor[PluginConfig](), "") {
		known[k] = true
	}
	// And of a Wasm binding entry (mcp.bindings[].wasm).
	for _, k := range leafKeys(reflect.TypeFor[WasmBinding](), "") {
		known[k] = true
	}
	section := regexp.MustCompile(`^(?:--)?((?:control-plane|mcp|health|log|pid|relay|limits)\.[a-z][a-z0-9-]*(?:\.[a-z][a-z0-9-]*)*)$`)
	flagRef := regexp.MustCompile(`(?:^|[\s(])--((?:control-plane|mcp|health|log|pid|relay)\.[a-z][a-z0-9.-]*[a-z0-9])`)
	texts := map[string]string{}
	for _, doc := range append(repoFiles(t, ".md"), "koanf.yaml") {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		texts[doc] = string(b)
	}
	for name, text := range helpTopics {
		texts["sluice help "+name] = text
	}
	texts["usage"] = usageText + configUsage
	checked := 0
	for where, text := range texts {
		var names []string
		for _, m := range codeSpan.FindAllStringSubmatch(text, -1) {
			if f := strings.Fields(m[1]); len(f) > 0 {
				if k := section.FindStringSubmatch(strings.TrimSuffix(f[0], ":")); k != nil {
					names = append(names, k[1])
				}
			}
		}
		for _, m := range flagRef.FindAllStringSubmatch(text, -1) {
			names = append(names, m[1])
		}
		for _, k := range names {
			checked++
			if !known[k] {
				t.Errorf("%s names %s, which is not a config key", where, k)
			}
		}
	}
	if checked < 50 {
		t.Fatalf("only %d key mentions found: the scan is broken", checked)
	}
}

// TestNoSkipInCI: a test may skip only in -short mode, or where it checks
// the variable CI sets (CI or SLUICE_REQUIRE_TOOLCHAINS) and fails under it
// instead; a test CI silently skips proves nothing.
func TestNoSkipInCI(t *testing.T) {
	root := repoRoot(t)
	fset := token.NewFileSet()
	for _, rel := range repoFiles(t, "_test.go") {
		src, err := os.ReadFile(filepath.Join(root, rel))
		if err != nil {
			t.Fatal(err)
		}
		f, err := parser.ParseFile(fset, rel, src, 0)
		if err != nil {
			t.Fatal(err)
		}
		text := func(n ast.Node) string {
			return string(src[fset.Position(n.Pos()).Offset:fset.Position(n.End()).Offset])
		}
		// pkg.Skip is some package's function (sdk/rawjson.Skip), not a test
		// skipping.
		imported := map[string]bool{}
		for _, im := range f.Imports {
			name := path.Base(strings.Trim(im.Path.Value, `"`))
			if im.Name != nil {
				name = im.Name.Name
			}
			imported[name] = true
		}
		var stack []ast.Node
		ast.Inspect(f, func(n ast.Node) bool {
			if n == nil {
				stack = stack[:len(stack)-1]
				return true
			}
			stack = append(stack, n)
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || (sel.Sel.Name != "Skip" && sel.Sel.Name != "Skipf" && sel.Sel.Name != "SkipNow") {
				return true
			}
			if id, isIdent := sel.X.(*ast.Ident); isIdent && imported[id.Name] {
				return true
			}
			gated := false
			for i := len(stack) - 1; i >= 0 && !gated; i-- {
				switch s := stack[i].(type) {
				case *ast.IfStmt:
					gated = strings.Contains(text(s.Cond), "testing.Short()")
				case *ast.FuncDecl:
					body := text(s.Body)
					gated = strings.Contains(body, `"SLUICE_REQUIRE_TOOLCHAINS"`) || strings.Contains(body, `Getenv("CI")`)
					i = 0 // the enclosing declaration decides
				}
			}
			if !gated {
				t.Errorf("%s: %s skips without failing under CI (gate it on testing.Short(), or fail when CI or SLUICE_REQUIRE_TOOLCHAINS is set)",
					fset.Position(call.Pos()), text(call))
			}
			return true
		})
	}
}
