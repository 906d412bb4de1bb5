package headers_test

import (
	"reflect"
	"testing"

	"github.com/sluicemcp/sluice/plugins/headers"
	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

func TestRules(t *testing.T) {
	in := sdk.Headers{{Name: "X-Old", Value: "a"}, {Name: "X-Old", Value: "b"}, {Name: "Server", Value: "x"}}
	tests := []struct {
		name string
		cfg  string
		hook sdk.Hook
		want []sdk.HeaderEdit
	}{
		{"no rules", `{}`, sdk.HookRequest, nil},
		{"set and add", `{"rules":[{"hook":"request","op":"set","name":"x-team","value":"infra"},{"hook":"request","op":"add","name":"X-Tag","value":"1"}]}`, sdk.HookRequest,
			[]sdk.HeaderEdit{{Op: sdk.HeaderSet, Name: "X-Team", Value: "infra"}, {Op: sdk.HeaderAdd, Name: "X-Tag", Value: "1"}}},
		{"hook filter", `{"rules":[{"hook":"response","op":"set","name":"X-A","value":"1"}]}`, sdk.HookRequest, nil},
		{"remove present", `{"rules":[{"hook":"response","op":"remove","name":"server"}]}`, sdk.HookResponse,
			[]sdk.HeaderEdit{{Op: sdk.HeaderDelete, Name: "Server"}}},
		{"remove absent", `{"rules":[{"hook":"response","op":"remove","name":"X-None"}]}`, sdk.HookResponse, nil},
		{"rename keeps values", `{"rules":[{"hook":"http_response","op":"rename","name":"X-Old","to":"x-new"}]}`, sdk.HookHTTPResponse,
			[]sdk.HeaderEdit{{Op: sdk.HeaderDelete, Name: "X-Old"}, {Op: sdk.HeaderAdd, Name: "X-New", Value: "a"}, {Op: sdk.HeaderAdd, Name: "X-New", Value: "b"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := sdktest.MustEnv(tt.cfg).Run(headers.Plugin(), sdk.Message{Hook: tt.hook, Headers: in})
			if err != nil {
				t.Fatal(err)
			}
			if tt.want == nil {
				if !res.IsContinue() {
					t.Fatalf("got %+v", res)
				}
				return
			}
			if res.Action != sdk.ActionReplace || res.HasBody || !reflect.DeepEqual(res.Edits, tt.want) {
				t.Fatalf("got %+v\nwant %+v", res, tt.want)
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, cfg := range []string{
		`{"rules":[{"hook":"req","op":"set","name":"A"}]}`,
		`{"rules":[{"hook":"request","op":"upsert","name":"A"}]}`,
		`{"rules":[{"hook":"request","op":"set","name":"Bad Name"}]}`,
		`{"rules":[{"hook":"request","op":"set","name":"A","value":"x\r\nInjected: 1"}]}`,
		`{"rules":[{"hook":"request","op":"set","name":"A","value":"env:TOKEN"}]}`,
		`{"rules":[{"hook":"request","op":"rename","name":"A"}]}`,
		`{"rules":[{"hook":"request","op":"remove","name":"A","value":"v"}]}`,
		`{"rule":[]}`,
	} {
		t.Run(cfg, func(t *testing.T) {
			if _, err := headers.ParseConfig([]byte(cfg)); err == nil {
				t.Fatal("accepted")
			}
			res, err := sdktest.MustEnv(cfg).Run(headers.Plugin(), sdk.Message{})
			if err != nil || res.Action != sdk.ActionReject {
				t.Fatalf("invalid config did not fail closed: %+v %v", res, err)
			}
		})
	}
}
