// Package sdk is what a Sluice plugin author imports to write a plugin in Go.
//
// A plugin is a WebAssembly module (GOOS=wasip1 GOARCH=wasm, -buildmode=c-shared)
// that sees every MCP message crossing the tunnel and answers with an action.
// The package implements the native plugin ABI (sdk/ABI.md): the exports and
// imports live in a wasip1-only file; everything else (decoding the envelope into
// a Message, encoding a Result into an answer, config, logging and key/value
// helpers) is plain Go that also compiles natively, so plugin logic is
// unit-tested with `go test` through package sdktest.
//
// A plugin registers itself from init:
//
//	func init() {
//		sdk.Plugin{Name: "hello", OnRequest: func(m *sdk.Message) sdk.Result {
//			return sdk.Continue().SetHeader("X-Hello", "world")
//		}}.Register()
//	}
//	func main() {}
//
// Everything a handler receives (the Message's strings, Headers and Body) is a
// view into the host-written envelope buffer and is valid only until the handler
// returns; use Message.Clone or strings.Clone to keep anything longer.
//
// The package never imports wazero or extism.
package sdk
