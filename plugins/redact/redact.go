package redact

import (
	"bytes"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/sluicemcp/sluice/sdk"
)

// Kind names a detector; it appears in masks ("[REDACTED:email]"), config and
// reject messages.
type Kind uint8

// Detectors.
const (
	KindAWSAccessKey Kind = iota
	KindOpenAIKey
	KindGitHubToken
	KindSlackToken
	KindGoogleAPIKey
	KindStripeKey
	KindBearerToken
	KindPrivateKey
	KindJWT
	KindConnectionString
	KindEmail
	KindPhone
	KindCard
	KindIBAN
	KindAWSSecretKey
	numBuiltin
)

var kindNames = [numBuiltin]string{
	"aws_access_key", "openai_key", "github_token", "slack_token", "google_api_key",
	"stripe_key", "bearer_token", "private_key", "jwt", "connection_string",
	"email", "phone", "card", "iban", "aws_secret_key",
}

// KindNames lists the built-in detector names in a stable order.
func KindNames() []string { return append([]string(nil), kindNames[:]...) }

// Mask styles.
const (
	MaskLabel = "label" // [REDACTED:kind] (the default)
	MaskLast4 = "last4" // every character but the last four becomes '*'
	MaskFixed = "fixed" // Config.MaskText
)

// Actions.
const (
	ActionMask   = "mask"
	ActionReject = "reject"
)

// CustomRule is an operator-supplied pattern. It runs only where its literal
// prefix occurs, on a window of at most MaxLen bytes, never over the whole
// message.
type CustomRule struct {
	// Name labels matches ("[REDACTED:name]").
	Name string `json:"name"`
	// Pattern is a Go regexp; a match must start at the prefix.
	Pattern string `json:"pattern"`
	// Prefix is the literal the pattern starts with; "" = the pattern's own
	// literal prefix (a pattern without one is refused).
	Prefix string `json:"prefix,omitempty"`
	// MaxLen bounds the window the pattern runs on (default 256).
	MaxLen int `json:"max_len,omitempty"`
	// Action is mask or reject ("" = Config.Action).
	Action string `json:"action,omitempty"`
}

// Config is the plugin's configuration. The zero value enables every detector
// everywhere, masking with labels.
type Config struct {
	// Disable lists built-in detectors to turn off (see KindNames).
	Disable []string `json:"disable,omitempty"`
	// Only, when set, enables just these built-in detectors.
	Only []string `json:"only,omitempty"`
	// Action is the default action: mask (default) or reject.
	Action string `json:"action,omitempty"`
	// Actions overrides the action per detector name.
	Actions map[string]string `json:"actions,omitempty"`
	// Mask is the mask style: label (default), last4 or fixed.
	Mask string `json:"mask,omitempty"`
	// MaskText is the replacement for the fixed style (default "[REDACTED]").
	MaskText string `json:"mask_text,omitempty"`
	// Custom adds operator patterns.
	Custom []CustomRule `json:"custom,omitempty"`
	// Paths limits redaction to string values under these dotted JSON paths
	// (object keys; arrays are transparent; "*" matches any key), e.g.
	// "params.arguments", "result.content". Empty = everywhere.
	Paths []string `json:"paths,omitempty"`
	// Methods limits the plugin to these JSON-RPC methods (a trailing "*"
	// matches a prefix). Empty = every method.
	Methods []string `json:"methods,omitempty"`
	// RejectCode is the JSON-RPC error code of a reject (default -32001).
	RejectCode int `json:"reject_code,omitempty"`
	// RejectStatus is the HTTP status of a reject (default 0 = 200).
	RejectStatus int `json:"reject_status,omitempty"`
}

// ParseConfig decodes a JSON config, refusing unknown members (a typo must not
// silently disable redaction). Empty input is the zero Config.
func ParseConfig(raw []byte) (Config, error) {
	var c Config
	if err := sdk.DecodeConfig(raw, &c); err != nil {
		return c, fmt.Errorf("redact: config: %w", err)
	}
	return c, nil
}

type custom struct {
	name   string
	prefix []byte
	re     *regexp.Regexp
	maxLen int
	reject bool
	mask   []byte
}

// Redactor applies one Config. It keeps reusable buffers, so it is not safe
// for concurrent use (a Wasm instance handles one call at a time).
type Redactor struct {
	enabled    [numBuiltin]bool
	reject     [numBuiltin]bool
	labels     [numBuiltin][]byte
	style      string
	fixed      []byte
	custom     []custom
	paths      [][]string
	methods    []string
	rejectCode int
	rejectStat int

	matches []match
	stack   []frame
	out     []byte
}

type match struct {
	start, end int
	kind       int // < numBuiltin: a built-in Kind; else numBuiltin + custom index
}

type frame struct {
	obj       bool
	expectKey bool
	keyS      int
	keyE      int
}

// New validates cfg and returns its Redactor.
func New(cfg Config) (*Redactor, error) {
	r := &Redactor{style: cfg.Mask, rejectCode: cfg.RejectCode, rejectStat: cfg.RejectStatus}
	if r.rejectCode == 0 {
		r.rejectCode = -32001
	}
	switch r.style {
	case "":
		r.style = MaskLabel
	case MaskLabel, MaskLast4, MaskFixed:
	default:
		return nil, fmt.Errorf("redact: config mask %q: want label, last4 or fixed", cfg.Mask)
	}
	text := cfg.MaskText
	if text == "" {
		text = "[REDACTED]"
	}
	r.fixed = jsonInner(text)
	defReject, err := parseAction("action", cfg.Action, false)
	if err != nil {
		return nil, err
	}
	for k := range numBuiltin {
		r.enabled[k] = len(cfg.Only) == 0
		r.reject[k] = defReject
		r.labels[k] = jsonInner("[REDACTED:" + kindNames[k] + "]")
	}
	for _, n := range cfg.Only {
		k, ok := kindByName(n)
		if !ok {
			return nil, fmt.Errorf("redact: config only: unknown detector %q", n)
		}
		r.enabled[k] = true
	}
	for _, n := range cfg.Disable {
		k, ok := kindByName(n)
		if !ok {
			return nil, fmt.Errorf("redact: config disable: unknown detector %q", n)
		}
		r.enabled[k] = false
	}
	for n, a := range cfg.Actions {
		k, ok := kindByName(n)
		if !ok {
			return nil, fmt.Errorf("redact: config actions: unknown detector %q", n)
		}
		if r.reject[k], err = parseAction("actions."+n, a, defReject); err != nil {
			return nil, err
		}
	}
	for i, c := range cfg.Custom {
		cr, err := compileCustom(c, defReject)
		if err != nil {
			return nil, fmt.Errorf("redact: config custom[%d]: %w", i, err)
		}
		r.custom = append(r.custom, cr)
	}
	for _, p := range cfg.Paths {
		if p == "" {
			return nil, fmt.Errorf("redact: config paths: empty path")
		}
		r.paths = append(r.paths, strings.Split(p, "."))
	}
	r.methods = cfg.Methods
	return r, nil
}

func kindByName(n string) (Kind, bool) {
	i := slices.Index(kindNames[:], n)
	return Kind(i), i >= 0
}

func parseAction(key, a string, def bool) (bool, error) {
	switch a {
	case "":
		return def, nil
	case ActionMask:
		return false, nil
	case ActionReject:
		return true, nil
	}
	return false, fmt.Errorf("redact: config %s %q: want mask or reject", key, a)
}

func compileCustom(c CustomRule, defReject bool) (custom, error) {
	if c.Name == "" {
		return custom{}, fmt.Errorf("name is required")
	}
	re, err := regexp.Compile(`\A(?:` + c.Pattern + `)`)
	if err != nil {
		return custom{}, fmt.Errorf("pattern: %w", err)
	}
	prefix := c.Prefix
	if prefix == "" {
		orig, err := regexp.Compile(c.Pattern)
		if err != nil {
			return custom{}, fmt.Errorf("pattern: %w", err)
		}
		prefix, _ = orig.LiteralPrefix()
		if len(prefix) < 2 {
			return custom{}, fmt.Errorf("pattern %q has no literal prefix of at least 2 bytes: set prefix", c.Pattern)
		}
	}
	rej, err := parseAction("action", c.Action, defReject)
	if err != nil {
		return custom{}, err
	}
	ml := c.MaxLen
	if ml <= 0 {
		ml = 256
	}
	// The prefix is searched in raw JSON: search its escaped form.
	return custom{name: c.Name, prefix: jsonInner(prefix), re: re, maxLen: ml, reject: rej,
		mask: jsonInner("[REDACTED:" + c.Name + "]")}, nil
}

// jsonInner returns s as the inside of a JSON string literal (no quotes).
func jsonInner(s string) []byte {
	b := sdk.AppendJSONString(nil, s)
	return b[1 : len(b)-1]
}

// WantsMethod reports whether the config covers the JSON-RPC method.
func (r *Redactor) WantsMethod(method string) bool {
	if len(r.methods) == 0 {
		return true
	}
	for _, m := range r.methods {
		if p, ok := strings.CutSuffix(m, "*"); ok {
			if strings.HasPrefix(method, p) {
				return true
			}
		} else if m == method {
			return true
		}
	}
	return false
}

// Outcome says what Redact found.
type Outcome struct {
	// Masked is the number of masked values.
	Masked int
	// Rejected names the detector whose rule rejects the message ("" = none).
	Rejected string
}

// RejectCode and RejectStatus return the configured reject error code and HTTP
// status.
func (r *Redactor) RejectCode() int   { return r.rejectCode }
func (r *Redactor) RejectStatus() int { return r.rejectStat }

// Redact scans body (a JSON-RPC message). When something is masked it returns
// the new message, in a buffer reused by the next call; when nothing matched it
// returns nil and allocates nothing. A reject rule stops at its first match.
func (r *Redactor) Redact(body []byte) ([]byte, Outcome) {
	r.scan(body)
	var o Outcome
	if len(r.matches) == 0 {
		return nil, o
	}
	for _, m := range r.matches {
		if r.isReject(m.kind) {
			o.Rejected = r.kindName(m.kind)
			return nil, o
		}
	}
	if len(r.custom) > 0 {
		slices.SortFunc(r.matches, func(a, b match) int { return a.start - b.start })
	}
	out := r.out[:0]
	prev := 0
	for _, m := range r.matches {
		if m.start < prev { // overlapping (a custom rule inside a built-in match)
			continue
		}
		out = append(out, body[prev:m.start]...)
		out = r.appendMask(out, body[m.start:m.end], m.kind)
		prev = m.end
		o.Masked++
	}
	out = append(out, body[prev:]...)
	r.out = out
	return out, o
}

func (r *Redactor) isReject(k int) bool {
	if k < int(numBuiltin) {
		return r.reject[k]
	}
	return r.custom[k-int(numBuiltin)].reject
}

func (r *Redactor) kindName(k int) string {
	if k < int(numBuiltin) {
		return kindNames[k]
	}
	return r.custom[k-int(numBuiltin)].name
}

func (r *Redactor) appendMask(dst, orig []byte, k int) []byte {
	switch r.style {
	case MaskFixed:
		return append(dst, r.fixed...)
	case MaskLast4:
		if len(orig) > 4 && bytes.IndexByte(orig[len(orig)-4:], '\\') < 0 {
			for range len(orig) - 4 {
				dst = append(dst, '*')
			}
			return append(dst, orig[len(orig)-4:]...)
		}
	}
	if k < int(numBuiltin) {
		return append(dst, r.labels[k]...)
	}
	return append(dst, r.custom[k-int(numBuiltin)].mask...)
}

// scan fills r.matches with every match in the string values of b. On a
// reject match it may stop early.
func (r *Redactor) scan(b []byte) {
	r.matches = r.matches[:0]
	r.stack = r.stack[:0]
	n := len(b)
	for i := 0; i < n; {
		switch b[i] {
		case '"':
			end := stringEnd(b, i+1)
			if end < 0 {
				return // unterminated: not JSON, leave the rest alone
			}
			d := len(r.stack)
			if d > 0 && r.stack[d-1].obj && r.stack[d-1].expectKey {
				r.stack[d-1].keyS, r.stack[d-1].keyE = i+1, end
				r.stack[d-1].expectKey = false
			} else if d == 0 || !r.stack[d-1].obj || !reservedKey(b[r.stack[d-1].keyS:r.stack[d-1].keyE], d == 1) {
				before := len(r.matches)
				if d > 0 && r.stack[d-1].obj && r.enabled[KindAWSSecretKey] &&
					secretKeyName(b[r.stack[d-1].keyS:r.stack[d-1].keyE]) && awsSecretValue(b, i+1, end) == end {
					r.add(i+1, end, int(KindAWSSecretKey))
				} else {
					r.scanString(b, i+1, end)
				}
				if len(r.matches) > before && len(r.paths) > 0 && !r.pathAllowed(b) {
					r.matches = r.matches[:before]
				}
			}
			i = end + 1
		case '{':
			r.stack = append(r.stack, frame{obj: true, expectKey: true})
			i++
		case '[':
			r.stack = append(r.stack, frame{})
			i++
		case '}', ']':
			if len(r.stack) > 0 {
				r.stack = r.stack[:len(r.stack)-1]
			}
			i++
		case ',':
			if d := len(r.stack); d > 0 && r.stack[d-1].obj {
				r.stack[d-1].expectKey = true
			}
			i++
		default:
			i++
		}
	}
}

// reservedKey reports whether a member's string value is never edited: ids
// and protocol tokens anywhere (editing them would break correlation of
// requests, progress, cancellation and pagination), and the envelope members
// at the top level.
func reservedKey(k []byte, top bool) bool {
	switch string(k) {
	case "id", "requestId", "progressToken", "cursor", "nextCursor":
		return true
	case "jsonrpc", "method":
		return top
	}
	return false
}

// stringEnd returns the index of the quote closing the string whose contents
// start at i, or -1.
func stringEnd(b []byte, i int) int {
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return -1
		}
		q := i + j
		bs := 0
		for k := q - 1; k >= i && b[k] == '\\'; k-- {
			bs++
		}
		if bs%2 == 0 {
			return q
		}
		i = q + 1
	}
}

// pathAllowed reports whether the string value being scanned lies under one of
// the configured paths.
func (r *Redactor) pathAllowed(b []byte) bool {
	for _, p := range r.paths {
		ok := true
		pi := 0
		for _, f := range r.stack {
			if pi == len(p) {
				break
			}
			if !f.obj {
				continue
			}
			if p[pi] != "*" && p[pi] != string(b[f.keyS:f.keyE]) {
				ok = false
				break
			}
			pi++
		}
		if ok && pi == len(p) {
			return true
		}
	}
	return false
}
