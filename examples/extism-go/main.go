// Command extism-go is a Sluice plugin written against the Extism ABI with
// Extism's Go PDK: any Extism plugin loads in Sluice unchanged (sdk/ABI.md,
// "The Extism ABI"). It is the fixture host/testdata/extism-go.wasm.
//
// Built with (from this directory):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false -ldflags=-buildid= -o extism-go.wasm . && mv extism-go.wasm ../../host/testdata/
//
// Behaviour, by JSON-RPC method: "echo" answers replace with the message
// unchanged and sets header X-Team to the config value "team"; "tools/call"
// of tool "forbidden" is rejected; "spin" never returns (the host's call
// timeout must stop it); anything else continues (empty output).
package main

import (
	"encoding/json"

	"github.com/extism/go-pdk"
)

type envelope struct {
	Hook         string          `json:"hook"`
	Notification bool            `json:"notification"`
	RequestID    string          `json:"request_id"`
	Method       string          `json:"method"`
	Tool         string          `json:"tool"`
	Message      json.RawMessage `json:"message"`
}

type headerEdit struct {
	Op    string `json:"op"`
	Name  string `json:"name"`
	Value string `json:"value"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

type answer struct {
	Action  string          `json:"action"`
	Status  int             `json:"status,omitempty"`
	Message json.RawMessage `json:"message,omitempty"`
	Headers []headerEdit    `json:"headers,omitempty"`
	Error   *rpcError       `json:"error,omitempty"`
}

//go:wasmexport describe
func describe() int32 {
	pdk.OutputString(`{"name":"extism-go","version":"1.0.0","hooks":["request","response"]}`)
	return 0
}

//go:wasmexport on_request
func onRequest() int32 { return handle() }

//go:wasmexport on_response
func onResponse() int32 { return handle() }

func handle() int32 {
	var e envelope
	if err := json.Unmarshal(pdk.Input(), &e); err != nil {
		pdk.SetError(err)
		return 1
	}
	var a answer
	switch {
	case e.Method == "spin":
		for spins := 0; ; spins++ {
			if spins < 0 {
				return 2
			}
		}
	case e.Method == "echo":
		team, _ := pdk.GetConfig("team")
		pdk.Log(pdk.LogInfo, "echo from extism-go")
		a = answer{Action: "replace", Message: e.Message, Headers: []headerEdit{{Op: "set", Name: "X-Team", Value: team}}}
	case e.Method == "tools/call" && e.Tool == "forbidden":
		a = answer{Action: "reject", Status: 403, Error: &rpcError{Code: -32001, Message: "tool forbidden"}}
	default:
		return 0 // no output: continue unchanged
	}
	b, err := json.Marshal(&a)
	if err != nil {
		pdk.SetError(err)
		return 1
	}
	pdk.Output(b)
	return 0
}

func main() {}
