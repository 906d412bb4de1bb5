package host

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Secret references in a plugin's config. Any string value of
// PluginConfig.Config, at any depth, that starts with one of these prefixes
// is a reference: the host replaces it with the value PluginConfig.Secrets
// returns for it before the plugin sees its config. Map keys are never
// references. See RATIONALE.md, "Secret references in plugin config".
const (
	SecretEnvPrefix  = "env:"
	SecretFilePrefix = "file:"
)

// minScrubLen is the shortest resolved value the host masks in plugin log
// lines and failure messages; shorter ones would mask ordinary words.
const minScrubLen = 4

// scrubMask replaces a resolved secret in plugin output the host logs.
const scrubMask = "[secret]"

// SecretResolver returns the value a secret reference stands for. ref is the
// whole config string ("env:NAME" or "file:/path"). The error must name the
// reference and the problem, never a value.
type SecretResolver func(ref string) (string, error)

// IsSecretRef reports whether a plugin config string is a secret reference.
func IsSecretRef(s string) bool {
	return strings.HasPrefix(s, SecretEnvPrefix) || strings.HasPrefix(s, SecretFilePrefix)
}

// errNoResolver is returned for a reference when PluginConfig.Secrets is nil.
var errNoResolver = errors.New("secret reference, but no secret resolver is configured")

// resolveConfig returns a copy of cfg in which every secret reference among
// the string values is replaced by its value, and the values it resolved. It
// walks the shapes YAML and JSON decode to (maps with string keys, lists,
// strings) plus []string and map[string]string; any other value is copied as
// is. cfg itself is never modified. Errors name the value's path
// ("config.rules[0].value") and come from resolve; they never hold a value.
func resolveConfig(cfg map[string]any, resolve SecretResolver) (map[string]any, []string, error) {
	if cfg == nil {
		return nil, nil, nil
	}
	r := &resolver{resolve: resolve}
	out, err := r.walk("config", cfg)
	if err != nil {
		return nil, nil, err
	}
	return out.(map[string]any), r.values, nil
}

type resolver struct {
	resolve SecretResolver
	values  []string
}

func (r *resolver) str(path, s string) (string, error) {
	if !IsSecretRef(s) {
		return s, nil
	}
	if r.resolve == nil {
		return "", fmt.Errorf("%s: %w", path, errNoResolver)
	}
	v, err := r.resolve(s)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	r.values = append(r.values, v)
	return v, nil
}

func (r *resolver) walk(path string, v any) (any, error) {
	switch t := v.(type) {
	case string:
		return r.str(path, t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			w, err := r.walk(path+"."+k, e)
			if err != nil {
				return nil, err
			}
			out[k] = w
		}
		return out, nil
	case []any:
		out := make([]any, len(t))
		for i, e := range t {
			w, err := r.walk(fmt.Sprintf("%s[%d]", path, i), e)
			if err != nil {
				return nil, err
			}
			out[i] = w
		}
		return out, nil
	case map[string]string:
		out := make(map[string]string, len(t))
		for k, e := range t {
			w, err := r.str(path+"."+k, e)
			if err != nil {
				return nil, err
			}
			out[k] = w
		}
		return out, nil
	case []string:
		out := make([]string, len(t))
		for i, e := range t {
			w, err := r.str(fmt.Sprintf("%s[%d]", path, i), e)
			if err != nil {
				return nil, err
			}
			out[i] = w
		}
		return out, nil
	}
	return v, nil
}

// scrubber masks resolved secret values in text the host logs on a plugin's
// behalf (its log lines, its failure messages): a plugin that prints its own
// config must not put a secret in the operator's logs.
type scrubber struct {
	r *strings.Replacer // nil = nothing to mask
}

func newScrubber(values []string) scrubber {
	// Longer values first: the replacer tries its pairs in order, so a
	// secret that contains another is masked whole.
	values = slices.Clone(values)
	slices.SortFunc(values, func(a, b string) int { return len(b) - len(a) })
	var pairs []string
	for _, v := range values {
		if len(v) >= minScrubLen {
			pairs = append(pairs, v, scrubMask)
		}
	}
	if len(pairs) == 0 {
		return scrubber{}
	}
	return scrubber{r: strings.NewReplacer(pairs...)}
}

func (s scrubber) str(v string) string {
	if s.r == nil {
		return v
	}
	return s.r.Replace(v)
}

// err masks secrets in err's message, keeping it matchable with errors.Is/As.
func (s scrubber) err(err error) error {
	if s.r == nil || err == nil {
		return err
	}
	msg := err.Error()
	if clean := s.r.Replace(msg); clean != msg {
		return scrubbedError{msg: clean, err: err}
	}
	return err
}

type scrubbedError struct {
	msg string
	err error
}

func (e scrubbedError) Error() string { return e.msg }
func (e scrubbedError) Unwrap() error { return e.err }

// HasSecretRefs reports whether cfg holds a secret reference anywhere, by
// the rule Load applies: its holder re-reads secrets by loading again.
func HasSecretRefs(cfg map[string]any) bool {
	found := false
	_, _, _ = resolveConfig(cfg, func(ref string) (string, error) {
		found = true
		return ref, nil
	})
	return found
}
