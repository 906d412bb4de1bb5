// Package faultkit holds the tools of Sluice's fault suite (engine/faults):
// a load client that classifies every call it makes (ok, error, hung,
// duplicated, mismatched), an MCP server that counts how often each call was
// executed, and helpers that run real processes and stop, freeze or kill them
// by PID. The suite's scenarios and the relay scale-out tests use them; they
// are ordinary code, not tests, so each scenario reads as a short script.
package faultkit
