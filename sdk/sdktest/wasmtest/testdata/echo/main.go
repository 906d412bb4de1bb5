//go:build wasip1

// Command echo is a test plugin exercising every part of the sdk ABI glue.
package main

import (
	"strings"

	"github.com/sluicemcp/sluice/sdk"
)

func init() {
	sdk.Plugin{
		Name:    "echo",
		Version: "1.0.0",
		OnRequest: func(m *sdk.Message) sdk.Result {
			var cfg struct {
				Mode string `json:"mode"`
			}
			if err := sdk.ConfigInto(&cfg); err != nil {
				return sdk.Reject(500, -32603, err.Error())
			}
			switch cfg.Mode {
			case "reject":
				return sdk.Reject(403, -32001, "denied "+m.Tool)
			case "replace":
				return sdk.Replace([]byte(strings.Replace(string(m.Body), `"x"`, `"y"`, 1)))
			case "kv":
				n, _ := sdk.KVGet("count")
				n = append(n, '+')
				sdk.KVSet("count", n)
				return sdk.Continue().SetHeader("X-Count", string(n))
			case "headers":
				sdk.Infof("method %s", m.Method)
				return sdk.Continue().SetHeader("X-Echo", m.Headers.Get("X-In")+"|"+m.Caller)
			}
			return sdk.Continue()
		},
		OnResponse: func(m *sdk.Message) sdk.Result {
			if m.Notification {
				return sdk.Drop()
			}
			return sdk.Continue()
		},
	}.Register()
}

func main() {}
