package rawjson_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/sluicemcp/sluice/sdk/rawjson"
)

var seeds = []string{
	`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hi \u003c\ud83d\ude00"}],"isError":false}}`,
	` [1, -2.5e+3, 0.0E-0, true, false, null, "x\"\\\/\b\f\n\r\t"] `,
	`{"a":1,"a":{"b":[[],{}]},"\u0061":"dup","":""}`,
	`{"\ud800":"\udc00\ud800\ud800\udc00","k":"\u00e9é"}`,
	`"unterminated`, `{"a" 1}`, `[1,]`, `01`, `-`, `1e+`, `tru`, `{"a":[}`, "\"\x01\"",
	"\"\xff\xfe\"", `[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]`,
}

// FuzzSkip compares the scanner with encoding/json on arbitrary input:
// Skip accepts exactly the valid documents (nesting within MaxDepth) and
// ends where the value ends; Walk visits the string values encoding/json
// decodes, in order, and AppendUnquoted decodes them the same; Member finds
// what encoding/json decodes into a map (the last of repeated names).
func FuzzSkip(f *testing.F) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		valid := json.Valid(b)
		end, err := rawjson.Skip(b, 0)
		got := err == nil && rawjson.SkipSpace(b, end) == len(b)
		if got != valid && !(valid && errors.Is(err, rawjson.ErrDepth)) {
			t.Fatalf("Skip = %d, %v; json.Valid = %v", end, err, valid)
		}
		if err == nil && !json.Valid(b[:end]) {
			t.Fatalf("Skip ended at %d: %q is not a value", end, b[:end])
		}
		if !got {
			return
		}

		var walked [][]byte
		if _, err := rawjson.Walk(b, 0, func(s, e int, esc bool) error {
			if esc != (bytes.IndexByte(b[s:e], '\\') >= 0) {
				t.Fatalf("%q: escaped = %v", b[s:e], esc)
			}
			walked = append(walked, rawjson.AppendUnquoted(nil, b[s:e]))
			return nil
		}); err != nil {
			t.Fatalf("Walk: %v after Skip succeeded", err)
		}
		want := stringValues(t, b)
		if len(walked) != len(want) {
			t.Fatalf("Walk visited %d strings, encoding/json decodes %d", len(walked), len(want))
		}
		for n := range want {
			// encoding/json also replaces invalid UTF-8 from the document;
			// AppendUnquoted keeps those bytes as they are.
			if utf8.Valid(walked[n]) && string(walked[n]) != want[n] {
				t.Fatalf("string %d: AppendUnquoted %q, encoding/json %q", n, walked[n], want[n])
			}
		}

		var obj map[string]json.RawMessage
		if json.Unmarshal(b, &obj) != nil || obj == nil {
			return
		}
		for name, raw := range obj {
			if strings.ContainsRune(name, utf8.RuneError) {
				continue // encoding/json may have made it of invalid UTF-8; rawjson compares bytes
			}
			sp, err := rawjson.Member(b, 0, name)
			if err != nil || !bytes.Equal(b[sp.Start:sp.End], raw) {
				t.Fatalf("Member(%q) = %q, %v; encoding/json %s", name, b[sp.Start:sp.End], err, raw)
			}
		}
		if sp, err := rawjson.Member(b, 0, "\x00absent"); err != nil || sp.Found() {
			t.Fatalf("Member of an absent name = %+v, %v", sp, err)
		}
	})
}

// stringValues decodes the string values of the valid document b in
// order, member names left out.
func stringValues(t *testing.T, b []byte) []string {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // 1e999 is valid JSON, not a float64
	var out []string
	var inObject []bool // per open container
	key := false        // the next token in the current object is a name
	for {
		tok, err := d.Token()
		if err == io.EOF {
			return out
		}
		if err != nil {
			t.Fatalf("encoding/json on a valid document: %v", err)
		}
		inObj := func() bool { return len(inObject) > 0 && inObject[len(inObject)-1] }
		switch v := tok.(type) {
		case json.Delim:
			if v == '{' || v == '[' {
				inObject = append(inObject, v == '{')
				key = v == '{'
			} else {
				inObject = inObject[:len(inObject)-1]
				key = inObj() // the container was a value: a name may follow
			}
		default:
			if key { // a member name; its value follows
				key = false
				continue
			}
			if s, ok := v.(string); ok {
				out = append(out, s)
			}
			key = inObj()
		}
	}
}

// FuzzAppendString: whatever the bytes, AppendString writes one valid
// string literal that encoding/json decodes to what it decodes
// json.Marshal's literal of the same string to (invalid UTF-8 becoming
// U+FFFD in both), and AppendUnquoted takes it back to that string.
func FuzzAppendString(f *testing.F) {
	for _, s := range []string{"", "plain", "q\"b\\s/\b\f\n\r\t\x00\x1f\x7f", "<&>\u2028\u2029", "\xff\xfe\xe2\x82 😀", "\ufffd"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		lit := rawjson.AppendString([]byte("prefix"), s)[len("prefix"):]
		if !bytes.Equal(rawjson.AppendStringBytes(nil, []byte(s)), lit) {
			t.Fatalf("AppendStringBytes differs from AppendString")
		}
		var got string
		if err := json.Unmarshal(lit, &got); err != nil {
			t.Fatalf("AppendString(%q) = %s: %v", s, lit, err)
		}
		ref, _ := json.Marshal(s)
		var want string
		if err := json.Unmarshal(ref, &want); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("AppendString(%q) decodes to %q, json.Marshal's to %q", s, got, want)
		}
		end, esc, err := rawjson.StringEnd(lit, 0)
		if err != nil || end != len(lit) {
			t.Fatalf("StringEnd(%s) = %d, %v", lit, end, err)
		}
		if back := rawjson.AppendUnquoted(nil, lit[1:len(lit)-1]); string(back) != want {
			t.Fatalf("round trip %q -> %s -> %q", s, lit, back)
		}
		if esc != slices.Contains(lit[1:len(lit)-1], '\\') {
			t.Fatalf("StringEnd(%s): escaped = %v", lit, esc)
		}
	})
}
