// Package demo is the demo MCP server behind `sluice run --embedded-mcp-stub`
// and `sluice dev`: an mcp-go server with a few tools that exercise the tunnel
// (echo, progress streaming, large results, fake secrets for the redaction
// demo), a resource and a prompt, served as Streamable HTTP on /mcp.
package demo
