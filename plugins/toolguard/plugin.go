package toolguard

import (
	"bytes"

	"github.com/sluicemcp/sluice/sdk"
)

// Version is the plugin's version.
const Version = "1.0.0"

var current = sdk.ConfigValue[*Guard]{Parse: func(raw []byte) (*Guard, error) {
	c, err := ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	return New(c)
}}

// Plugin returns the toolguard plugin: request and response hooks, every
// method (a tools/list_changed notification may arrive in the response
// stream of any request).
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name:       "toolguard",
		Version:    Version,
		ConfigKeys: ConfigKeys,
		OnRequest:  onRequest,
		OnResponse: onResponse,
	}
}

// guard returns the Guard of the current config, or the answer of a
// broken config: fail closed, since a typo must not turn a policy off.
func guard() (*Guard, *sdk.Result) {
	g, err := current.Get()
	if err != nil {
		sdk.Errorf("%v", err)
		r := sdk.Reject(0, -32603, "toolguard: invalid plugin config")
		return nil, &r
	}
	return g, nil
}

func onRequest(m *sdk.Message) sdk.Result {
	if m.Method != "tools/call" || m.Notification {
		return sdk.Continue()
	}
	g, bad := guard()
	if bad != nil {
		return *bad
	}
	return g.checkCall(m)
}

func onResponse(m *sdk.Message) sdk.Result {
	if m.Notification {
		if bytes.Contains(m.Body, []byte("list_changed")) {
			if g, bad := guard(); bad == nil {
				g.onNotification(m)
			}
		}
		return sdk.Continue()
	}
	switch m.Method {
	case "tools/list", "tools/call", "initialize", "server/discover":
	default:
		return sdk.Continue()
	}
	g, bad := guard()
	if bad != nil {
		return *bad
	}
	switch m.Method {
	case "tools/list":
		return g.onToolsList(m)
	case "tools/call":
		return g.onToolsCall(m)
	}
	return g.onServerInfo(m)
}
