// Package binding is what a binding plugin imports: a WebAssembly module that
// is itself the MCP server of a channel, for example one that turns an
// internal REST API or a command-line program into MCP tools.
//
// A binding plugin declares its tools and registers itself from init:
//
//	func init() {
//		binding.Plugin{
//			Name: "hello", Version: "1.0.0",
//			Tools: []binding.Tool{{
//				Name:        "greet",
//				Description: "Say hello",
//				InputSchema: []byte(`{"type":"object","properties":{"name":{"type":"string"}}}`),
//				Handler: func(c *binding.Call, args binding.Args) binding.ToolResult {
//					name, _ := args.String("name")
//					return binding.TextResult("hello " + name)
//				},
//			}},
//		}.Register()
//	}
//	func main() {}
//
// The package answers the protocol around the tools in both MCP eras:
// initialize, ping and the client's notifications (2025 revisions), and
// server/discover (2026-07-28, stateless), plus tools/list and tools/call
// from the tool table. Plugin.Methods adds or overrides any method. The
// plugin is stateless: it mints no session id, and a call may run on any
// instance of the module (state that spans calls goes in the sdk key/value
// store).
//
// During a call a plugin reaches the world only through the host, and only
// as far as the operator's config allows: Call.Progress and Call.Notify
// stream notifications to the client, HTTP sends a request to an allowed
// origin, and Exchange trades bytes with a configured command. Everything
// else (config, logs, key/value) is package sdk's.
//
// Build with standard Go:
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// and test the logic natively with package sdk/sdktest (BindingEnv.Call).
package binding
