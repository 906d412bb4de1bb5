//go:build wasip1

// Command headers is the headers plugin's Wasm entry point.
package main

import "github.com/sluicemcp/sluice/plugins/headers"

func init() { headers.Plugin().Register() }

func main() {}
