package host

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine"
	"github.com/sluicemcp/sluice/engine/enginetest"
)

// fakeSecrets resolves references from a map; anything else is an error
// naming the reference.
func fakeSecrets(m map[string]string) SecretResolver {
	return func(ref string) (string, error) {
		v, ok := m[ref]
		if !ok {
			return "", fmt.Errorf("%s is not set", ref)
		}
		return v, nil
	}
}

func TestResolveConfig(t *testing.T) {
	resolve := fakeSecrets(map[string]string{"env:A": "alpha-secret", "file:/run/b": "bravo-secret"})
	in := map[string]any{
		"plain":  "value",
		"num":    3,
		"ref":    "env:A",
		"env:A":  "key is not a reference",
		"rules":  []any{map[string]any{"value": "file:/run/b", "on": true}, "env:A"},
		"list":   []string{"x", "env:A"},
		"table":  map[string]string{"k": "file:/run/b"},
		"prefix": "environment: not a reference",
	}
	before := fmt.Sprint(in)
	out, values, err := resolveConfig(in, resolve)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]any{
		"plain":  "value",
		"num":    3,
		"ref":    "alpha-secret",
		"env:A":  "key is not a reference",
		"rules":  []any{map[string]any{"value": "bravo-secret", "on": true}, "alpha-secret"},
		"list":   []string{"x", "alpha-secret"},
		"table":  map[string]string{"k": "bravo-secret"},
		"prefix": "environment: not a reference",
	}
	if !reflect.DeepEqual(out, want) {
		t.Fatalf("resolved:\n%v\nwant:\n%v", out, want)
	}
	if len(values) != 5 {
		t.Errorf("resolved values = %d, want 5", len(values))
	}
	if fmt.Sprint(in) != before {
		t.Errorf("the caller's config was modified: %v", in)
	}
	if !HasSecretRefs(in) || HasSecretRefs(map[string]any{"env:A": 1, "x": []any{"file", 2}}) || HasSecretRefs(nil) {
		t.Error("HasSecretRefs does not follow the rule")
	}

	tests := []struct {
		name    string
		cfg     map[string]any
		resolve SecretResolver
		want    string
	}{
		{"resolver error names the path", map[string]any{"rules": []any{map[string]any{}, map[string]any{"value": "env:MISSING"}}},
			resolve, "config.rules[1].value: env:MISSING is not set"},
		{"no resolver", map[string]any{"token": "file:/run/t"}, nil, "config.token: secret reference, but no secret resolver is configured"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, _, err := resolveConfig(tt.cfg, tt.resolve); err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestSecretReferenceReachesGuest loads a real Extism guest whose echo sets
// X-Team to its "team" config value: the guest gets the resolved value, the
// caller's config keeps the reference, and a resolved value that shows up in
// the guest's own log line is masked.
func TestSecretReferenceReachesGuest(t *testing.T) {
	const team = "team-secret-7f3a9c"
	var logs enginetest.SyncBuffer
	r := newTestRuntime(t, nil, slog.New(slog.NewJSONHandler(&logs, nil)))
	cfg := map[string]any{"team": "env:TEAM", "note": "file:/run/note"}
	s := load(t, r, PluginConfig{Name: "extism-go", Path: fixture("extism-go.wasm"), Config: cfg, CallTimeout: 5 * time.Second,
		// The guest logs "echo from extism-go" on every echo: a resolved
		// value equal to part of it must not reach the log.
		Secrets: fakeSecrets(map[string]string{"env:TEAM": team, "file:/run/note": "echo from"})})
	res, err := handle(t, s, request("echo"))
	if err != nil || res.Action != engine.Replace {
		t.Fatalf("echo: %v %v", res.Action, err)
	}
	if got := res.Header.Get("X-Team"); got != team {
		t.Fatalf("X-Team = %q, want the resolved secret", got)
	}
	if cfg["team"] != "env:TEAM" {
		t.Errorf("Load modified the caller's config: %v", cfg)
	}
	if !strings.Contains(logs.String(), `"msg":"[secret] extism-go"`) {
		t.Errorf("the plugin's log line was not masked:\n%s", logs.String())
	}
	if strings.Contains(logs.String(), team) || strings.Contains(logs.String(), "echo from") {
		t.Errorf("a resolved secret reached the log:\n%s", logs.String())
	}
}

func TestSecretReferenceLoadErrors(t *testing.T) {
	r := newTestRuntime(t, nil, nil)
	tests := []struct {
		name    string
		resolve SecretResolver
		want    string
	}{
		{"no resolver", nil, `host: load plugin "extism-go": config.team: secret reference, but no secret resolver is configured`},
		{"unresolvable", fakeSecrets(nil), `host: load plugin "extism-go": config.team: env:TEAM is not set`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Load(context.Background(), PluginConfig{Name: "extism-go", Path: fixture("extism-go.wasm"),
				Config: map[string]any{"team": "env:TEAM"}, Secrets: tt.resolve})
			if err == nil || err.Error() != tt.want {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
		})
	}
}

func TestScrubber(t *testing.T) {
	s := newScrubber([]string{"abc", "token-1", "token-12345"})
	if got := s.str("x token-12345 y token-1 abc"); got != "x [secret] y [secret] abc" {
		t.Fatalf("str = %q", got)
	}
	inner := errors.New("guest said token-1")
	err := s.err(fmt.Errorf("call: %w", inner))
	if err.Error() != "call: guest said [secret]" || !errors.Is(err, inner) {
		t.Fatalf("err = %v (is inner: %v)", err, errors.Is(err, inner))
	}
	if (scrubber{}).str("token-1") != "token-1" {
		t.Fatal("an empty scrubber changed text")
	}
}
