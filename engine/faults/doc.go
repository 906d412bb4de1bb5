// Package faults is Sluice's fault suite: scenarios that run the real
// `sluice relay` and `sluice run` binaries and a counting MCP server as
// separate processes on 127.0.0.1, put them under load with a classifying
// client, and kill, freeze, restart or starve them by PID. Every scenario
// asserts its numbers: no call hung, duplicated or answered with another
// call's answer, plus the bound the fault allows.
//
// The scenarios are slow (seconds each) and run with `make faults` (which CI
// runs); a plain `go test ./...` skips them unless SLUICE_FAULTS=1.
package faults
