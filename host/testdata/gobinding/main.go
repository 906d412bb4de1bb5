//go:build wasip1

// Command gobinding is a binding plugin written with the Go SDK
// (sdk/binding), for the host's tests. It is built by the tests
// (binding_guest_test.go), not committed.
//
// Tools: echo {message}; progress {steps}; fetch {url, method?, body?}
// (the response's status, body and the X-Seen header as JSON, or the
// host's error as an error result); exchange {command, input}; panic;
// spin (never returns).
package main

import (
	"strconv"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/binding"
)

func init() {
	binding.Plugin{
		Name:    "gobinding",
		Version: "1.0.0",
		Tools: []binding.Tool{
			{Name: "echo", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				m, _ := a.String("message")
				return binding.TextResult(m)
			}},
			{Name: "progress", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				n, _ := a.Number("steps")
				for i := 1; i <= int(n); i++ {
					if err := c.Progress(float64(i), n, ""); err != nil {
						return binding.ErrorResult(err.Error())
					}
				}
				return binding.TextResult("done")
			}},
			{Name: "fetch", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				url, _ := a.String("url")
				method, _ := a.String("method")
				body, _ := a.String("body")
				resp, err := binding.HTTP(binding.HTTPRequest{Method: method, URL: url, Body: []byte(body),
					Header: sdk.Headers{{Name: "X-Guest", Value: "1"}, {Name: "Authorization", Value: "guest-chosen"}}})
				if err != nil {
					return binding.ErrorResult(err.Error())
				}
				b := []byte(`{"status":`)
				b = strconv.AppendInt(b, int64(resp.Status), 10)
				b = append(b, `,"seen":`...)
				b = sdk.AppendJSONString(b, resp.Header.Get("X-Seen"))
				b = append(b, `,"body":`...)
				b = sdk.AppendJSONString(b, string(resp.Body))
				return binding.JSONResult(append(b, '}'))
			}},
			{Name: "exchange", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				cmd, _ := a.String("command")
				in, _ := a.String("input")
				out, err := binding.Exchange(cmd, []byte(in))
				if err != nil {
					return binding.ErrorResult(err.Error())
				}
				return binding.TextResult(string(out))
			}},
			{Name: "panic", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				panic("asked to")
			}},
			{Name: "spin", Handler: func(c *binding.Call, a binding.Args) binding.ToolResult {
				for n := 0; ; n++ {
					if n < 0 {
						return binding.TextResult("")
					}
				}
			}},
		},
	}.Register()
}

func main() {}
