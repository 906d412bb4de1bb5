// Package filters holds the tests and benchmarks of the example filters
// (examples/LANG-filter): the same small security filter written in Go, C,
// Rust, WAT (native ABI) and AssemblyScript (Extism ABI). Each is built with
// examples/build.sh, loaded by the real plugin host, checked case by case,
// run as the agent's pipeline in a tunnel (relay + agent + a real MCP server
// on 127.0.0.1), and benchmarked per language (docs/plugins.md).
package filters
