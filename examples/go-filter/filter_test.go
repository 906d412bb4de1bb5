package main

import (
	"testing"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

// TestFilter runs the filter natively through the SDK's codecs; the built
// module is tested through the real host, with the other languages' filters,
// in examples/filters.
func TestFilter(t *testing.T) {
	env := sdktest.MustEnv(map[string]any{"block": []string{"delete_file"}, "tag": "go", "mask": "ACCT-####"})
	res, err := env.Run(Filter(), sdk.Message{Hook: sdk.HookRequest, Method: "tools/call", Tool: "delete_file"})
	if err != nil || res.Action != sdk.ActionReject {
		t.Fatalf("blocked tool: %v %v", res.Action, err)
	}
	res, err = env.Run(Filter(), sdk.Message{Hook: sdk.HookRequest, Method: "tools/list"})
	if err != nil || len(res.Edits) != 1 || res.Edits[0].Name != TagHeader || res.Edits[0].Value != "go" {
		t.Fatalf("tag: %+v %v", res, err)
	}
	body := `{"result":{"text":"ACCT-1234, ACCT-12x4, \\ACCT-9999"}}`
	res, err = env.Run(Filter(), sdk.Message{Hook: sdk.HookResponse, Method: "tools/call", Body: []byte(body)})
	if want := `{"result":{"text":"*********, ACCT-12x4, \\ACCT-9999"}}`; err != nil || string(res.Body) != want {
		t.Fatalf("mask: %s %v, want %s", res.Body, err, want)
	}
}
