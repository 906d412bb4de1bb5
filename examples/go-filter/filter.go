// Command go-filter is the example security filter in Go, on the native ABI
// through the Go SDK (sdk/). Every example filter (examples/*-filter) does
// the same, configured with:
//
//	block: [delete_file, drop_table]  # tools/call of these tools is rejected (-32001)
//	tag: infra                        # every other request gets header X-Sluice-Tag: infra
//	mask: "ACCT-####"                 # in responses, each match becomes ********* (# = a digit)
//
// Build (from the repository root; `make examples` builds every example):
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -trimpath -buildvcs=false \
//	    -ldflags='-s -w -buildid=' -o examples/go-filter/go-filter.wasm ./examples/go-filter
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
)

// TagHeader is the header the filter sets on every request it lets through.
const TagHeader = "X-Sluice-Tag"

// config is the filter's configuration.
type config struct {
	Block []string `json:"block"`
	Tag   string   `json:"tag"`
	Mask  string   `json:"mask"`
}

func parseConfig(raw []byte) (*config, error) {
	c := &config{}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, c); err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
	}
	if strings.ContainsAny(c.Mask, "\"\\") || strings.ContainsFunc(c.Mask, func(r rune) bool { return r < 0x20 }) {
		return nil, errors.New("config: mask may not hold quotes, backslashes or control characters")
	}
	if strings.ContainsAny(c.Tag, "\r\n") {
		return nil, errors.New("config: tag may not hold line breaks")
	}
	return c, nil
}

var cfg = sdk.ConfigValue[*config]{Parse: parseConfig}

// current returns the parsed config; an invalid one fails every call.
func current() *config {
	c, err := cfg.Get()
	if err != nil {
		sdk.Errorf("%v", err)
		panic(err)
	}
	return c
}

// Filter returns the plugin.
func Filter() sdk.Plugin {
	return sdk.Plugin{
		Name:       "go-filter",
		Version:    "1.0.0",
		ConfigKeys: []string{"block", "mask", "tag"},
		OnRequest:  onRequest,
		OnResponse: onResponse,
	}
}

func onRequest(m *sdk.Message) sdk.Result {
	c := current()
	if m.Method == "tools/call" && slices.Contains(c.Block, m.Tool) {
		return sdk.Reject(0, -32001, "tool blocked by policy")
	}
	if c.Tag != "" {
		return sdk.Continue().SetHeader(TagHeader, c.Tag)
	}
	return sdk.Continue()
}

func onResponse(m *sdk.Message) sdk.Result {
	c := current()
	if c.Mask == "" {
		return sdk.Continue()
	}
	if out := mask(m.Body, c.Mask); out != nil {
		return sdk.Replace(out)
	}
	return sdk.Continue()
}

// mask returns a copy of b with every match of pattern masked, or nil when
// nothing matches. Candidates are found by the pattern's first literal byte
// (bytes.IndexByte), so most of b is skipped without a per-position check.
func mask(b []byte, pattern string) []byte {
	k := strings.IndexFunc(pattern, func(r rune) bool { return r != '#' }) // offset of the first literal byte
	var out []byte
	for i := max(k, 0); i < len(b); {
		if k >= 0 {
			j := bytes.IndexByte(b[i:], pattern[k])
			if j < 0 {
				break
			}
			i += j
		}
		start := i - max(k, 0)
		if start+len(pattern) <= len(b) && matchAt(b, start, pattern) {
			if out == nil {
				out = bytes.Clone(b)
			}
			for j := range len(pattern) {
				out[start+j] = '*'
			}
			i = start + len(pattern) + max(k, 0)
			continue
		}
		i++
	}
	return out
}

// matchAt reports whether pattern matches b at i: '#' matches one ASCII
// digit, any other byte itself; a match right after a backslash (inside a
// JSON escape) does not count.
func matchAt(b []byte, i int, pattern string) bool {
	if i > 0 && b[i-1] == '\\' {
		return false
	}
	for j := range len(pattern) {
		c := b[i+j]
		if p := pattern[j]; p == '#' {
			if c < '0' || c > '9' {
				return false
			}
		} else if c != p {
			return false
		}
	}
	return true
}

func main() {}
