//go:build wasip1

// Command rest-binding is a Sluice binding plugin that turns a REST/JSON API
// into MCP tools, described in its config (see README.md and package rest).
//
// Build with:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -o rest-binding.wasm .
package main

import "github.com/sluicemcp/sluice/examples/rest-binding/rest"

func init() { rest.Plugin().Register() }

func main() {}
