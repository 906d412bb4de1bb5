package main

import (
	"io"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/spf13/pflag"
)

// removedKeys are config keys Sluice once accepted and now refuses, each
// with what to do instead. A config that still sets one fails with the hint
// (file, flag or environment), never silently.
var removedKeys = map[string]string{
	"allow-remote-ui": "removed: Sluice serves no admin pages, and health.listen-addr and relay.admin-listen-addr decide who reaches /metrics and /readyz; delete it",
}

// removedEnv maps the environment variables of removed keys to the keys.
var removedEnv = map[string]string{
	"ALLOW_REMOTE_UI": "allow-remote-ui",
}

// editDistance is the optimal-string-alignment distance between a and b:
// inserting, deleting or substituting a byte, or swapping two neighbours,
// costs 1.
func editDistance(a, b string) int {
	// Three rows: the one before the previous (for swaps), previous, current.
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}

// nearest returns the candidate closest to word when it is close enough to
// be a likely typo: at most a third of word's length away (at least one
// edit). Ties go to the first candidate.
func nearest(word string, candidates []string) (string, bool) {
	best, bestD := "", -1
	for _, c := range candidates {
		if d := editDistance(word, c); bestD < 0 || d < bestD {
			best, bestD = c, d
		}
	}
	if bestD < 0 || bestD > max(1, len(word)/3) {
		return "", false
	}
	return best, true
}

// keyHint explains an unknown config key: the removal note of a removed key,
// the key a misplaced or misspelt one probably meant, or "".
func keyHint(key string, candidates []string) string {
	if h, ok := removedKeys[key]; ok {
		return h
	}
	// A key at the wrong level: public-url for relay.public-url.
	last := key[strings.LastIndexAny(key, ".]")+1:]
	for _, c := range candidates {
		if c != key && strings.HasSuffix(c, "."+last) {
			return "did you mean " + c + "?"
		}
	}
	if s, ok := nearest(key, candidates); ok {
		return "did you mean " + s + "?"
	}
	return ""
}

// withHint appends " (hint)" to msg when there is one.
func withHint(msg, hint string) string {
	if hint == "" {
		return msg
	}
	return msg + " (" + hint + ")"
}

// configKeys lists every key of the Config type as a dotted path, sorted:
// the leaves of nested sections (relay.public-url) and lists of entries as
// one key (pipeline, relay.tunnels).
func configKeys() []string {
	keys := leafKeys(reflect.TypeFor[Config](), "")
	slices.Sort(keys)
	return keys
}

// leafKeys lists the koanf keys of struct type t under prefix, descending
// into nested structs but not into lists.
func leafKeys(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		tag := f.Tag.Get("koanf")
		if tag == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeFor[time.Duration]() {
			out = append(out, leafKeys(f.Type, prefix+tag+".")...)
			continue
		}
		out = append(out, prefix+tag)
	}
	return out
}

// flagHint explains a flag parse error: for an unknown flag, the removal
// note, the subcommands that have it, or the flag it probably meant.
func flagHint(mode Mode, err error) string {
	name, ok := strings.CutPrefix(err.Error(), "unknown flag: --")
	if !ok {
		return ""
	}
	if h, ok := removedKeys[name]; ok {
		return h
	}
	// The flags of every subcommand, with the subcommands that have each.
	modes := map[string][]string{}
	var names []string
	for _, m := range []Mode{ModeRun, ModeRelay, ModeDev} {
		newFlagSet(m, io.Discard).VisitAll(func(f *pflag.Flag) {
			if modes[f.Name] == nil {
				names = append(names, f.Name)
			}
			modes[f.Name] = append(modes[f.Name], "sluice "+string(m))
		})
	}
	elsewhere := func(flag string) string {
		if slices.Contains(modes[flag], "sluice "+string(mode)) {
			return ""
		}
		return " It is a flag of " + strings.Join(modes[flag], " and ") + "."
	}
	if len(modes[name]) > 0 {
		return strings.TrimSuffix(strings.TrimPrefix(elsewhere(name), " It is "), ".")
	}
	if s, ok := nearest(name, names); ok {
		return "did you mean --" + s + "?" + elsewhere(s)
	}
	if slices.Contains(configKeys(), name) {
		return name + " has no flag for sluice " + string(mode) + ": set it in the config file"
	}
	return ""
}
