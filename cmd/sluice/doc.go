// Command sluice is the Sluice CLI: one binary for both halves of the tunnel.
//
//	sluice run      the agent: polls a relay (or OpenAI's hosted tunnel) for MCP
//	                work and forwards it to a private MCP server
//	sluice relay    the self-hostable public side
//	sluice dev      relay + agent + a demo MCP server in one process, on loopback
//	sluice version  version, commit and Go version
//
// Flags, environment and an optional YAML file (--config / SLUICE_CONFIG) are
// merged by koanf (flags > env > file > defaults) into the typed Config of this
// package, validated, and mapped to the engine's own config structs; the
// engine never sees koanf. See docs/configuration.md for every key.
package main
