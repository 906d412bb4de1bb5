// Package wiretest loads the published tunnel contract
// (../shared/wire/tunnel-openapi.json beside the repository) for tests that
// check what the agent and the relay put on the wire against it.
package wiretest

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Extension names the published contract does not list yet, but OpenAI's
// agent and its mock of the hosted service exchange (WIRE.md).
const (
	commandOAuthDiscovery = "oauth_discovery"
	respOAuthDiscovery    = "oauth_discovery_response"
)

// Contract is the published OpenAPI document, loaded once per test.
type Contract struct {
	t        testing.TB
	path     string
	extended string // the document plus the oauth_discovery names
}

// Load finds the published contract by walking up from the working
// directory to the module root and looking in ../shared/wire. Without it a
// test is skipped, except under CI (CI=true), where that is a failure: CI
// always has it.
func Load(t testing.TB) *Contract {
	t.Helper()
	path, err := find()
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI must have the published contract beside the repository (../shared/wire/tunnel-openapi.json): %v", err)
		}
		t.Skipf("published contract not found (a plain clone has no ../shared): %v", err)
	}
	return &Contract{t: t, path: path}
}

// Path is the contract's file.
func (c *Contract) Path() string { return c.path }

func find() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			p := filepath.Join(dir, "..", "shared", "wire", "tunnel-openapi.json")
			if _, err := os.Stat(p); err != nil {
				return "", err
			}
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", os.ErrNotExist
		}
		dir = parent
	}
}

// Schema compiles the JSON pointer ptr of the published document
// ("/components/schemas/TunnelResponsePayload").
func (c *Contract) Schema(ptr string) *jsonschema.Schema {
	c.t.Helper()
	return compile(c.t, c.path, ptr)
}

// Extended compiles ptr of the published document extended with exactly
// the oauth_discovery command (the common fields of
// SessionTerminationPolledCommand under its own command_type) and the
// oauth_discovery_response payload type; everything else is as published.
func (c *Contract) Extended(ptr string) *jsonschema.Schema {
	c.t.Helper()
	if c.extended == "" {
		c.extended = c.extend()
	}
	return compile(c.t, c.extended, ptr)
}

func (c *Contract) extend() string {
	t := c.t
	raw, err := os.ReadFile(c.path)
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatal(err)
	}
	schemas := doc["components"].(map[string]any)["schemas"].(map[string]any)
	rpt := schemas["ResponsePayloadType"].(map[string]any)
	rpt["enum"] = append(rpt["enum"].([]any), respOAuthDiscovery)
	var od map[string]any
	b, _ := json.Marshal(schemas["SessionTerminationPolledCommand"])
	_ = json.Unmarshal(b, &od)
	ct := od["properties"].(map[string]any)["command_type"].(map[string]any)
	ct["const"], ct["default"] = commandOAuthDiscovery, commandOAuthDiscovery
	od["title"] = "OAuthDiscoveryPolledCommand"
	schemas["OAuthDiscoveryPolledCommand"] = od
	items := schemas["PolledCommandList"].(map[string]any)["properties"].(map[string]any)["commands"].(map[string]any)["items"].(map[string]any)
	items["oneOf"] = append(items["oneOf"].([]any), map[string]any{"$ref": "#/components/schemas/OAuthDiscoveryPolledCommand"})
	items["discriminator"].(map[string]any)["mapping"].(map[string]any)[commandOAuthDiscovery] = "#/components/schemas/OAuthDiscoveryPolledCommand"
	out, _ := json.Marshal(doc)
	file := filepath.Join(t.TempDir(), "tunnel-openapi-extended.json")
	if err := os.WriteFile(file, out, 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func compile(t testing.TB, file, ptr string) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	url := "file:///" + filepath.Base(file)
	if err := c.AddResource(url, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(url + "#" + ptr)
	if err != nil {
		t.Fatalf("compile %s#%s: %v", file, ptr, err)
	}
	return s
}

// Validate validates the JSON document b against s.
func Validate(t testing.TB, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("unmarshal for validation: %v: %s", err, b)
	}
	return s.Validate(v)
}
