package plugins

import (
	"embed"
	"slices"
	"strings"
)

//go:embed headers/headers.wasm oauthmeta/oauthmeta.wasm redact/redact.wasm toolguard/toolguard.wasm
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
