package redact

import "github.com/sluicemcp/sluice/sdk"

// Version is the plugin's version.
const Version = "1.0.0"

var current = sdk.ConfigValue[*Redactor]{Parse: func(raw []byte) (*Redactor, error) {
	c, err := ParseConfig(raw)
	if err != nil {
		return nil, err
	}
	return New(c)
}}

// Plugin returns the redact plugin: request and response hooks, every method
// (narrow with the methods config).
func Plugin() sdk.Plugin {
	return sdk.Plugin{
		Name:       "redact",
		Version:    Version,
		OnRequest:  handle,
		OnResponse: handle,
	}
}

func handle(m *sdk.Message) sdk.Result {
	r, err := current.Get()
	if err != nil {
		// Fail closed: a broken redaction config must not let data through.
		sdk.Errorf("%v", err)
		return sdk.Reject(0, -32603, "redact: invalid plugin config")
	}
	if !r.WantsMethod(m.Method) {
		return sdk.Continue()
	}
	out, o := r.Redact(m.Body)
	if o.Rejected != "" {
		sdk.Infof("redact: rejected %s message (%s)", m.Hook, o.Rejected)
		return sdk.Reject(r.RejectStatus(), r.RejectCode(), "redact: message contains a "+o.Rejected)
	}
	if out == nil {
		return sdk.Continue()
	}
	sdk.Debugf("redact: masked %d value(s)", o.Masked)
	return sdk.Replace(out)
}
