package main

import "github.com/sluicemcp/sluice/plugins"

// lookupBuiltin returns the embedded module of a first-party plugin
// (redact, headers, oauthmeta, toolguard).
func lookupBuiltin(name string) ([]byte, bool) { return plugins.Lookup(name) }

// builtinNames lists the first-party plugins, for error messages.
func builtinNames() []string { return plugins.Names() }
