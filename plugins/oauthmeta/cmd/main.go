//go:build wasip1

// Command oauthmeta is the oauthmeta plugin's Wasm entry point.
package main

import "github.com/sluicemcp/sluice/plugins/oauthmeta"

func init() { oauthmeta.Plugin().Register() }

func main() {}
