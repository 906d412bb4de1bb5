//go:build wasip1

// Command cli-binding is a Sluice binding plugin that exposes command-line
// programs (not MCP servers) as MCP tools through the host's process
// capability: a calculator (bc, one line in, one line out, kept running) and
// a word counter (wc, run once per call). See README.md and package calc.
//
// Build with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o cli-binding.wasm .
package main

import "github.com/sluicemcp/sluice/examples/cli-binding/calc"

func init() { calc.Plugin().Register() }

func main() {}
