package oauthmeta_test

import (
	"encoding/json"
	"testing"

	"github.com/sluicemcp/sluice/plugins/oauthmeta"
	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/sdktest"
)

const (
	pubResource = "https://relay.example.com/v1/mcp/{tunnel}"
	pubMeta     = "https://relay.example.com/.well-known/oauth-protected-resource/v1/mcp/{tunnel}"
	tunnel      = "tunnel_0123456789abcdef0123456789abcdef"
	wantMeta    = "https://relay.example.com/.well-known/oauth-protected-resource/v1/mcp/" + tunnel
)

func TestRewriteResource(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"rfc 9728 document",
			`{"resource":"http://127.0.0.1:3010/mcp","authorization_servers":["http://127.0.0.1:3011"],"scopes_supported":["mcp:tools"],"resource_name":"MCP Demo Server","resource_documentation":"http://127.0.0.1:3010/docs"}`,
			`{"resource":"https://relay.example.com/v1/mcp/tunnel_x","authorization_servers":["http://127.0.0.1:3011"],"scopes_supported":["mcp:tools"],"resource_name":"MCP Demo Server","resource_documentation":"http://127.0.0.1:3010/docs"}`},
		{"pretty, resource last",
			"{\n  \"authorization_servers\": [\"https://auth.example.com\"],\n  \"bearer_methods_supported\": [\"header\"],\n  \"resource\": \"https://mcp.internal/mcp\"\n}\n",
			"{\n  \"authorization_servers\": [\"https://auth.example.com\"],\n  \"bearer_methods_supported\": [\"header\"],\n  \"resource\": \"https://relay.example.com/v1/mcp/tunnel_x\"\n}\n"},
		{"nested resource untouched", `{"meta":{"resource":"x"},"authorization_servers":["https://a"]}`, ""},
		{"already public", `{"resource":"https://relay.example.com/v1/mcp/tunnel_x"}`, ""},
		{"not a string", `{"resource":["a"]}`, ""},
		{"not json", `<html>`, ""},
		// Clients read the last of repeated members, and names unescaped.
		{"repeated resource", `{"resource":"http://in/a","resource":"http://in/b"}`, `{"resource":"http://in/a","resource":"https://relay.example.com/v1/mcp/tunnel_x"}`},
		{"escaped name", `{"resourc\u0065":"http://in/a"}`, `{"resourc\u0065":"https://relay.example.com/v1/mcp/tunnel_x"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := oauthmeta.RewriteResource([]byte(tt.in), "https://relay.example.com/v1/mcp/tunnel_x")
			if string(got) != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestRewriteChallenge(t *testing.T) {
	const u = "https://relay/.well-known/oauth-protected-resource/v1/mcp/t"
	tests := []struct{ name, in, want string }{
		{"quoted with realm, scope, error",
			`Bearer realm="mcp", error="invalid_token", error_description="The access token expired", resource_metadata="http://127.0.0.1:3010/.well-known/oauth-protected-resource/mcp", scope="mcp:tools files:read"`,
			`Bearer realm="mcp", error="invalid_token", error_description="The access token expired", resource_metadata="` + u + `", scope="mcp:tools files:read"`},
		{"unquoted value", `Bearer resource_metadata=http://internal/x,scope="a"`, `Bearer resource_metadata="` + u + `",scope="a"`},
		{"several challenges", `Basic realm="x", Bearer resource_metadata="http://a/b", DPoP resource_metadata="http://a/c" , algs="ES256"`,
			`Basic realm="x", Bearer resource_metadata="` + u + `", DPoP resource_metadata="` + u + `" , algs="ES256"`},
		{"param name inside a quoted value", `Bearer error_description="see resource_metadata=x", resource_metadata = "http://a"`,
			`Bearer error_description="see resource_metadata=x", resource_metadata = "` + u + `"`},
		{"escaped quote in value", `Bearer realm="a \"b\"", resource_metadata="http://a/\"x\""`, `Bearer realm="a \"b\"", resource_metadata="` + u + `"`},
		{"case-insensitive name", `Bearer Resource_Metadata="http://a"`, `Bearer Resource_Metadata="` + u + `"`},
		{"no param", `Bearer realm="mcp", scope="x"`, ""},
		{"similar name", `Bearer xresource_metadata="http://a"`, ""},
		{"already public", `Bearer resource_metadata="` + u + `"`, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := oauthmeta.RewriteChallenge(tt.in, u)
			if tt.want == "" {
				if ok || got != tt.in {
					t.Fatalf("changed: %s", got)
				}
				return
			}
			if !ok || got != tt.want {
				t.Fatalf("got  %s\nwant %s", got, tt.want)
			}
		})
	}
}

func TestPlugin(t *testing.T) {
	cfg := map[string]any{"public_resource": pubResource, "public_metadata_url": pubMeta}
	doc := `{"resource":"http://127.0.0.1:3010/mcp","authorization_servers":["http://127.0.0.1:3011/"]}`
	t.Run("metadata body", func(t *testing.T) {
		res, err := sdktest.MustEnv(cfg).Run(oauthmeta.Plugin(), sdk.Message{Hook: sdk.HookHTTPResponse, Status: 200, Tunnel: tunnel, Body: []byte(doc)})
		if err != nil {
			t.Fatal(err)
		}
		var got struct {
			Resource string   `json:"resource"`
			AS       []string `json:"authorization_servers"`
		}
		if res.Action != sdk.ActionReplace || json.Unmarshal(res.Body, &got) != nil {
			t.Fatalf("got %+v", res)
		}
		if got.Resource != "https://relay.example.com/v1/mcp/"+tunnel || got.AS[0] != "http://127.0.0.1:3011/" {
			t.Fatalf("got %+v", got)
		}
	})
	t.Run("401 response header, several values", func(t *testing.T) {
		res, err := sdktest.MustEnv(cfg).Run(oauthmeta.Plugin(), sdk.Message{Hook: sdk.HookResponse, Status: 401, Tunnel: tunnel,
			Headers: sdk.Headers{{Name: "Www-Authenticate", Value: `Basic realm="x"`}, {Name: "Www-Authenticate", Value: `Bearer resource_metadata="http://in/x", scope="s"`}},
			Body:    []byte(`{"jsonrpc":"2.0","id":1,"error":{"code":-32001,"message":"unauthorized"}}`)})
		if err != nil {
			t.Fatal(err)
		}
		want := []sdk.HeaderEdit{
			{Op: sdk.HeaderSet, Name: "Www-Authenticate", Value: `Basic realm="x"`},
			{Op: sdk.HeaderAdd, Name: "Www-Authenticate", Value: `Bearer resource_metadata="` + wantMeta + `", scope="s"`},
		}
		if res.Action != sdk.ActionReplace || res.HasBody || len(res.Edits) != 2 || res.Edits[0] != want[0] || res.Edits[1] != want[1] {
			t.Fatalf("got %+v", res)
		}
	})
	t.Run("no tunnel id leaves placeholder URLs alone", func(t *testing.T) {
		res, err := sdktest.MustEnv(cfg).Run(oauthmeta.Plugin(), sdk.Message{Hook: sdk.HookHTTPResponse, Body: []byte(doc)})
		if err != nil || !res.IsContinue() {
			t.Fatalf("got %+v %v", res, err)
		}
	})
	t.Run("bad config", func(t *testing.T) {
		for _, c := range []string{`{"public_resource":"/relative"}`, `{"public_resource":"ftp://x/y"}`, `{"resource":"x"}`} {
			if _, err := oauthmeta.ParseConfig([]byte(c)); err == nil {
				t.Errorf("%s accepted", c)
			}
		}
	})
}

func FuzzRewriteChallenge(f *testing.F) {
	f.Add(`Bearer realm="a", resource_metadata="http://x"`)
	f.Add(`resource_metadata=`)
	f.Fuzz(func(t *testing.T, v string) {
		out, ok := oauthmeta.RewriteChallenge(v, "https://r/m")
		if !ok && out != v {
			t.Fatal("changed without ok")
		}
	})
}
