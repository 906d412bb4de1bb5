// Package plugins ships the first-party plugins inside the binary: each
// plugins/<name>/<name>.wasm, built from plugins/<name>/cmd by build.sh and
// checked against its source by check.sh, is embedded here so `go install`
// alone gives a complete product.
//
// The logic of each plugin is a native, importable package (plugins/redact,
// plugins/headers, plugins/oauthmeta) unit-tested with plain `go test`; its
// cmd/ directory is the wasip1 entry point that registers it with the sdk.
package plugins

import (
	"embed"
	"slices"
	"strings"
)

//go:embed headers/headers.wasm oauthmeta/oauthmeta.wasm redact/redact.wasm
var modules embed.FS

// Lookup returns the built module of the first-party plugin name.
func Lookup(name string) ([]byte, bool) {
	if name == "" || strings.ContainsAny(name, "/.\\") {
		return nil, false
	}
	b, err := modules.ReadFile(name + "/" + name + ".wasm")
	if err != nil {
		return nil, false
	}
	return b, true
}

// Names lists the first-party plugins, sorted.
func Names() []string {
	entries, _ := modules.ReadDir(".")
	var names []string
	for _, e := range entries {
		if e.IsDir() {
			names = append(names, e.Name())
		}
	}
	slices.Sort(names)
	return names
}
