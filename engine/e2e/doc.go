// Package e2e holds Sluice's end-to-end tests: a relay, an agent and a real
// third-party MCP server started in one test process (servers written in
// other languages as child processes, bound to 127.0.0.1 and stopped by PID),
// driven by real third-party MCP clients: the official conformance suite, the
// TypeScript SDK, mcp-go and the inspector CLI. It has no non-test API.
//
// The npm packages and Go tools it needs are installed by .ci/deps.sh into
// $SLUICE_TOOLS_DIR (default $HOME/.cache/sluice). A test whose tool is
// missing skips with a message naming the script, unless
// SLUICE_REQUIRE_TOOLCHAINS=1, which turns that skip into a failure.
package e2e
