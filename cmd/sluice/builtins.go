package main

// lookupBuiltin returns the embedded module of a first-party plugin
// (redact, headers, …). Until the plugins package ships its modules there
// are none, and `sluice dev` runs with an empty agent pipeline.
func lookupBuiltin(name string) ([]byte, bool) { return nil, false }

// builtinNames lists the first-party plugins, for error messages.
func builtinNames() []string { return nil }
