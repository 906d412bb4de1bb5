//go:build wasip1

// Command redact is the redact plugin's Wasm entry point.
package main

import "github.com/sluicemcp/sluice/plugins/redact"

func init() { redact.Plugin().Register() }

func main() {}
