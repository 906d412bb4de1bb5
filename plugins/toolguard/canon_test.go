package toolguard

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"slices"
	"strings"
	"testing"
)

// TestCanonicalRFC8785 checks the canonical form against the examples of
// RFC 8785 (sections 3.2.2 and 3.2.3).
func TestCanonicalRFC8785(t *testing.T) {
	in := `{
  "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
  "literals": [null, true, false]
}`
	want := `{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}`
	got, _, err := appendCanon(nil, []byte(in), 0, 0)
	if err != nil || string(got) != want {
		t.Fatalf("canonical form:\n got %s (%v)\nwant %s", got, err, want)
	}

	// Member order by UTF-16 code units (RFC 8785 3.2.3).
	sorting := `{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}`
	got, _, err = appendCanon(nil, []byte(sorting), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	last := -1
	for _, name := range []string{"Carriage Return", "One", "Control", "Latin Small", "Euro Sign", "Emoji", "Hebrew"} {
		i := strings.Index(string(got), name)
		if i < last {
			t.Fatalf("member %q out of order in %s", name, got)
		}
		last = i
	}
}

func TestCanonicalNumbers(t *testing.T) {
	tests := []struct {
		f    float64
		want string
	}{
		{0, "0"}, {math.Copysign(0, -1), "0"}, {1, "1"}, {-1.5, "-1.5"},
		{1e20, "100000000000000000000"}, {1e21, "1e+21"}, {123e18, "123000000000000000000"},
		{0.000001, "0.000001"}, {1e-7, "1e-7"}, {1.5e-7, "1.5e-7"},
		{5e-324, "5e-324"}, {1.7976931348623157e308, "1.7976931348623157e+308"},
		{9007199254740993, "9007199254740992"}, {0.1, "0.1"}, {100, "100"},
	}
	for _, tt := range tests {
		if got := string(appendNumber(nil, tt.f)); got != tt.want {
			t.Errorf("%v: got %s, want %s", tt.f, got, tt.want)
		}
	}
}

func TestCompareUTF16(t *testing.T) {
	keys := []string{"\ufb33", "\U0001F600", "\u20ac", "\u00f6", "\u0080", "1", "\r", "\U0001F601"}
	slices.SortFunc(keys, func(a, b string) int { return compareUTF16([]byte(a), []byte(b)) })
	want := []string{"\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001F600", "\U0001F601", "\ufb33"}
	if !slices.Equal(keys, want) {
		t.Fatalf("order %q, want %q", keys, want)
	}
}

// TestHashTool: the pin is the SHA-256 of the canonical JSON of the hashed
// members only, whatever the key order, whitespace and escapes.
func TestHashTool(t *testing.T) {
	def := `{"name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"_meta":{"x":1},"icons":[]}`
	canonical := `{"description":"Echo <b>","inputSchema":{"properties":{"message":{"type":"string"}},"type":"object"},"name":"echo"}`
	sum := sha256.Sum256([]byte(canonical))
	want := "sha256:" + hex.EncodeToString(sum[:])
	got, err := HashTool([]byte(def))
	if err != nil || got != want {
		t.Fatalf("HashTool = %s, %v; want %s", got, err, want)
	}
	same := []string{
		// Another order, whitespace, escapes (Go's encoder writes < as \u003c), other _meta.
		"{ \"inputSchema\" : {\"properties\":{\"message\":{\"type\":\"string\"}}, \"type\":\"object\"},\n \"description\":\"Echo \\u003cb\\u003e\", \"name\":\"echo\", \"_meta\":{\"y\":2} }",
		// A repeated member: the last one counts (as in every client's decoder).
		`{"name":"other","name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}}}`,
	}
	for _, s := range same {
		if h, err := HashTool([]byte(s)); err != nil || h != want {
			t.Errorf("HashTool(%s) = %s, %v; want the same pin", s, h, err)
		}
	}
	differ := []string{
		`{"name":"echo","description":"Echo <b>.","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}}}`,
		`{"name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"number"}}}}`,
		`{"name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"annotations":{"destructiveHint":true}}`,
		`{"name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"title":"Echo"}`,
		`{"name":"echo","description":"Echo <b>","inputSchema":{"type":"object","properties":{"message":{"type":"string"}}},"outputSchema":{"type":"object"}}`,
	}
	for _, s := range differ {
		if h, err := HashTool([]byte(s)); err != nil || h == want {
			t.Errorf("HashTool(%s) = %s, %v; want another pin", s, h, err)
		}
	}
	for _, bad := range []string{`{"description":"x"}`, `{"name":1}`, `{"name":"x"`, `[]`, `{"name":"x","inputSchema":{"a":1e999}}`} {
		if _, err := HashTool([]byte(bad)); err == nil {
			t.Errorf("HashTool(%s): no error", bad)
		}
	}
}

func TestGlob(t *testing.T) {
	tests := []struct {
		pat, s string
		want   bool
	}{
		{"*", "", true}, {"*", "anything/at.all", true}, {"read_*", "read_file", true}, {"read_*", "write_file", false},
		{"*_file", "read_file", true}, {"a*b*c", "axxbyyc", true}, {"a*b*c", "axxbyy", false},
		{"git?ub/*", "github/search", true}, {"echo", "echo", true}, {"echo", "echo2", false}, {"", "", true},
		{"*a*a*a*a*b", strings.Repeat("a", 200), false},
	}
	for _, tt := range tests {
		g, _ := compileGlob("p", tt.pat, true)
		if got := g.match(tt.s); got != tt.want {
			t.Errorf("%q ~ %q = %v", tt.pat, tt.s, got)
		}
	}
	hp, _ := compileHost("h", "*.Example.com")
	if !hp.match("docs.example.com") || hp.match("example.com") || hp.match("badexample.com") {
		t.Error("*.example.com")
	}
	if _, err := compileHost("h", "https://x"); err == nil {
		t.Error("a URL is not a host")
	}
}

func FuzzHashTool(f *testing.F) {
	f.Add([]byte(`{"name":"a","description":"\u003c","inputSchema":{"x":[1,2.5e3,{"b":null}]}}`))
	f.Add([]byte(`{"name":"a","a":{"b":{"c":[[[]]]}}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := HashTool(b)
		if err == nil && checkPin(h) != nil {
			t.Fatalf("malformed pin %s", h)
		}
	})
}
