//go:build wasip1

// Command toolguard is the toolguard plugin's Wasm entry point.
package main

import "github.com/sluicemcp/sluice/plugins/toolguard"

func init() { toolguard.Plugin().Register() }

func main() {}
