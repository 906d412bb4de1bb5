package rawjson_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/sdk/rawjson"
)

func TestSkip(t *testing.T) {
	tests := []struct {
		doc  string
		end  int // -1 = error
		want error
	}{
		{`{}`, 2, nil},
		{` [1, -2.5e+3, true, false, null, "x"] ,`, 37, nil},
		{`"a\"b\\c\u00e9\ud83d\ude00"tail`, 27, nil},
		{`0`, 1, nil},
		{`-0.0E-0`, 7, nil},
		{`{"a":{"b":[{}]}}x`, 16, nil},
		{`01`, -1, rawjson.ErrSyntax},
		{`1.`, -1, rawjson.ErrSyntax},
		{`-`, -1, rawjson.ErrSyntax},
		{`1e`, -1, rawjson.ErrSyntax},
		{`tru`, -1, rawjson.ErrSyntax},
		{`"a` + "\n" + `"`, -1, rawjson.ErrSyntax}, // a raw control character
		{`"\x"`, -1, rawjson.ErrSyntax},
		{`"\u12G4"`, -1, rawjson.ErrSyntax},
		{`"\u12"`, -1, rawjson.ErrSyntax},
		{`"abc`, -1, rawjson.ErrSyntax},
		{`{"a" 1}`, -1, rawjson.ErrSyntax},
		{`{"a":1,}`, -1, rawjson.ErrSyntax},
		{`{a:1}`, -1, rawjson.ErrSyntax},
		{`[1 2]`, -1, rawjson.ErrSyntax},
		{`[1,]`, -1, rawjson.ErrSyntax},
		{`[`, -1, rawjson.ErrSyntax},
		{`{"a":[}`, -1, rawjson.ErrSyntax},
		{``, -1, rawjson.ErrSyntax},
		{`   `, -1, rawjson.ErrSyntax},
		{strings.Repeat("[", rawjson.MaxDepth) + strings.Repeat("]", rawjson.MaxDepth), 2 * rawjson.MaxDepth, nil},
		{strings.Repeat("[", rawjson.MaxDepth+1) + strings.Repeat("]", rawjson.MaxDepth+1), -1, rawjson.ErrDepth},
		{strings.Repeat(`{"a":`, rawjson.MaxDepth+1) + "1" + strings.Repeat("}", rawjson.MaxDepth+1), -1, rawjson.ErrDepth},
	}
	for _, tt := range tests {
		name := tt.doc
		if len(name) > 40 {
			name = name[:40]
		}
		t.Run(name, func(t *testing.T) {
			end, err := rawjson.Skip([]byte(tt.doc), 0)
			if tt.end < 0 {
				if !errors.Is(err, tt.want) {
					t.Fatalf("Skip = %d, %v; want %v", end, err, tt.want)
				}
				return
			}
			if err != nil || end != tt.end {
				t.Fatalf("Skip = %d, %v; want %d", end, err, tt.end)
			}
		})
	}
}

// TestStringEndEveryOffset puts each kind of byte that stops the
// eight-at-a-time skip at every offset of a word, after non-ASCII text
// (high bytes must not stop it) and before a quote: the end and the
// verdict must be what a byte-by-byte reading gives.
func TestStringEndEveryOffset(t *testing.T) {
	for _, stop := range []struct {
		s     string
		valid bool
	}{{`"`, true}, {`\n`, true}, {`\u00e9`, true}, {`\x`, false}, {"\x01", false}, {"\x1f", false}, {"\x7f", true}} {
		for pre := 0; pre < 20; pre++ {
			lit := `"` + strings.Repeat("é", pre/2) + strings.Repeat("a", pre%2) + stop.s + "tail 0123456789" + `"` + "rest"
			want := strings.LastIndex(lit, `"`) + 1
			if stop.s == `"` {
				want = 1 + len(strings.Repeat("é", pre/2)+strings.Repeat("a", pre%2)) + 1
			}
			end, esc, err := rawjson.StringEnd([]byte(lit), 0)
			if !stop.valid {
				if err == nil {
					t.Errorf("%q: no error", lit)
				}
				continue
			}
			if err != nil || end != want || esc != strings.HasPrefix(stop.s, `\`) {
				t.Errorf("%q: StringEnd = %d, %v, %v; want %d", lit, end, esc, err, want)
			}
		}
	}
}

// TestOutOfRange: an index outside the document is an error, not a panic.
func TestOutOfRange(t *testing.T) {
	b := []byte(`{"a":"b"}`)
	for _, i := range []int{-1, len(b), len(b) + 5} {
		if _, err := rawjson.Skip(b, i); err == nil {
			t.Errorf("Skip at %d: no error", i)
		}
		if _, err := rawjson.Members(b, i, nil); err == nil {
			t.Errorf("Members at %d: no error", i)
		}
		if _, err := rawjson.Elements(b, i, nil); err == nil {
			t.Errorf("Elements at %d: no error", i)
		}
		if _, _, err := rawjson.StringEnd(b, i); err == nil {
			t.Errorf("StringEnd at %d: no error", i)
		}
		if _, err := rawjson.Member(b, i, "a"); err == nil {
			t.Errorf("Member at %d: no error", i)
		}
	}
	if _, _, err := rawjson.StringEnd(b, 0); err == nil {
		t.Error("StringEnd at '{': no error")
	}
}

func TestMembersAndElements(t *testing.T) {
	b := []byte(` { "a" : [ 1 , "two" , {"x":null} ] , "b\u0022" : {} } `)
	var names, values []string
	end, err := rawjson.Members(b, 0, func(ks, ke, vs int) (int, error) {
		ve, err := rawjson.Skip(b, vs)
		names = append(names, string(b[ks:ke]))
		values = append(values, string(b[vs:ve]))
		return ve, err
	})
	if err != nil || end != len(b)-1 {
		t.Fatalf("Members = %d, %v", end, err)
	}
	if strings.Join(names, "|") != `a|b\u0022` || strings.Join(values, "|") != `[ 1 , "two" , {"x":null} ]|{}` {
		t.Fatalf("names %q, values %q", names, values)
	}
	var elems []string
	end, err = rawjson.Elements(b, 9, func(vs int) (int, error) {
		ve, err := rawjson.Skip(b, vs)
		elems = append(elems, string(b[vs:ve]))
		return ve, err
	})
	if err != nil || b[end-1] != ']' || strings.Join(elems, "|") != `1|"two"|{"x":null}` {
		t.Fatalf("Elements = %d, %v, %q", end, err, elems)
	}

	stop := errors.New("stop")
	if _, err := rawjson.Members(b, 0, func(int, int, int) (int, error) { return 0, stop }); err != stop {
		t.Errorf("Members did not return fn's error: %v", err)
	}
	// A fn that does not advance is an error, never an endless loop.
	if _, err := rawjson.Members(b, 0, func(_, _, vs int) (int, error) { return vs, nil }); !errors.Is(err, rawjson.ErrSyntax) {
		t.Errorf("Members with a stuck fn: %v", err)
	}
	if _, err := rawjson.Elements(b, 9, func(vs int) (int, error) { return vs - 3, nil }); !errors.Is(err, rawjson.ErrSyntax) {
		t.Errorf("Elements with a stuck fn: %v", err)
	}
	if _, err := rawjson.Members([]byte(`[1]`), 0, nil); !errors.Is(err, rawjson.ErrSyntax) {
		t.Errorf("Members of an array: %v", err)
	}
	if _, err := rawjson.Elements([]byte(`{}`), 0, nil); !errors.Is(err, rawjson.ErrSyntax) {
		t.Errorf("Elements of an object: %v", err)
	}
}

func TestWalk(t *testing.T) {
	b := []byte(`{"k":"v","a\n":["x\u0041",{"n":1,"s":""}],"e":"\ud83d\ude00"}`)
	var got []string
	end, err := rawjson.Walk(b, 0, func(s, e int, esc bool) error {
		if esc != strings.Contains(string(b[s:e]), `\`) {
			t.Errorf("%s: escaped = %v", b[s:e], esc)
		}
		got = append(got, string(rawjson.AppendUnquoted(nil, b[s:e])))
		return nil
	})
	if err != nil || end != len(b) {
		t.Fatalf("Walk = %d, %v", end, err)
	}
	if want := []string{"v", "xA", "", "\U0001F600"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Fatalf("strings %q, want %q", got, want)
	}
	stop := errors.New("stop")
	if _, err := rawjson.Walk(b, 0, func(int, int, bool) error { return stop }); err != stop {
		t.Fatalf("Walk did not return visit's error: %v", err)
	}
}

func TestMember(t *testing.T) {
	tests := []struct {
		doc, key, want string
		err            error
	}{
		{`{"resource":"https://a/x","b":1}`, "resource", `"https://a/x"`, nil},
		{` { "a" : {"resource":"inner"} , "resource" : "outer" } `, "resource", `"outer"`, nil},
		{`{"a":["resource",{"resource":1}],"resource":null}`, "resource", `null`, nil},
		{`{"a":"\"resource\":\"x\"","resource":2}`, "resource", `2`, nil},
		{`{"resource":1,"resource":2}`, "resource", `2`, nil}, // the last one wins
		{`{"resourc\u0065":true}`, "resource", `true`, nil},   // names are unescaped
		{`{"\u0072esource\u0022":1}`, "resource\"", `1`, nil}, // even to a quote
		{`{"a":1}`, "resource", "", nil},
		{`{}`, "resource", "", nil},
		{`["resource"]`, "resource", "", rawjson.ErrSyntax},
		{`{"a":"unterminated`, "resource", "", rawjson.ErrSyntax},
		{`{"resource":1,"a":tru}`, "resource", "", rawjson.ErrSyntax}, // the whole object is checked
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			sp, err := rawjson.Member([]byte(tt.doc), 0, tt.key)
			if !errors.Is(err, tt.err) || (err == nil && tt.doc[sp.Start:sp.End] != tt.want) || (tt.want == "") != !sp.Found() {
				t.Fatalf("Member = %+v %v", sp, err)
			}
		})
	}

	b := []byte(`{"x":{"name":"a","title":"b","name":"c"}}`)
	x, err := rawjson.Member(b, 0, "x")
	if err != nil {
		t.Fatal(err)
	}
	out := make([]rawjson.Span, 3)
	end, err := rawjson.Lookup(b, x.Start, []string{"name", "missing", "title"}, out)
	if err != nil || end != x.End {
		t.Fatalf("Lookup = %d, %v", end, err)
	}
	if string(b[out[0].Start:out[0].End]) != `"c"` || out[1].Found() || string(b[out[2].Start:out[2].End]) != `"b"` {
		t.Fatalf("Lookup spans %+v", out)
	}
}

func TestAppendUnquoted(t *testing.T) {
	tests := []struct{ raw, want string }{
		{`plain`, "plain"},
		{`a\"b\\c\/d\n`, "a\"b\\c/d\n"},
		{`\b\f\r\t`, "\b\f\r\t"},
		{`\u003cIMPORTANT\u003e`, "<IMPORTANT>"},
		{`\udb40\udc41`, "\U000E0041"}, // a tag character as a surrogate pair
		{`\ud800x`, "\ufffdx"},         // a lone surrogate
		{`\udc00\ud800`, "\ufffd\ufffd"},
		{`\ud800\ud800\udc00`, "\ufffd\U00010000"},
		{`\u200b`, "\u200b"},
		{`\u12`, ""}, // unchecked input: no panic
		{`x\`, "x"},
	}
	for _, tt := range tests {
		if got := string(rawjson.AppendUnquoted(nil, []byte(tt.raw))); got != tt.want {
			t.Errorf("AppendUnquoted(%s) = %q, want %q", tt.raw, got, tt.want)
		}
		if got := string(rawjson.AppendUnquoted([]byte(">"), []byte(tt.raw))); got != ">"+tt.want {
			t.Errorf("AppendUnquoted(>, %s) = %q", tt.raw, got)
		}
	}

	// Without escapes and with an empty dst, raw itself comes back, clipped:
	// appending to it must not write into the document.
	doc := []byte(`"abc"def`)
	got := rawjson.AppendUnquoted(nil, doc[1:4])
	if &got[0] != &doc[1] || cap(got) != 3 {
		t.Fatalf("no-copy path copied or kept capacity %d", cap(got))
	}
	_ = append(got, 'X')
	if string(doc) != `"abc"def` {
		t.Fatalf("append wrote into the document: %s", doc)
	}
}

func TestAppendString(t *testing.T) {
	tests := []struct{ s, want string }{
		{"", `""`},
		{"plain é 😀", `"plain é 😀"`},
		{"q\"b\\s/", `"q\"b\\s/"`},
		{"\b\f\n\r\t\x00\x1f\x7f", `"\b\f\n\r\t\u0000\u001f` + "\x7f" + `"`},
		{"<&>\u2028", `"<&>` + "\u2028" + `"`},
		{"bad \xff\xfe utf8 \xe2\x82", `"bad ` + "\ufffd\ufffd" + ` utf8 ` + "\ufffd\ufffd" + `"`},
	}
	for _, tt := range tests {
		if got := string(rawjson.AppendString([]byte("x"), tt.s)); got != "x"+tt.want {
			t.Errorf("AppendString(%q) = %s, want %s", tt.s, got, tt.want)
		}
		if got := string(rawjson.AppendStringBytes(nil, []byte(tt.s))); got != tt.want {
			t.Errorf("AppendStringBytes(%q) = %s, want %s", tt.s, got, tt.want)
		}
	}
}

// TestNoAllocs: reading a member and walking strings allocate nothing.
func TestNoAllocs(t *testing.T) {
	b := []byte(`{"jsonrpc":"2.0","id":7,"result":{"content":[{"type":"text","text":"hello \u0041 world"}],"isError":false}}`)
	var buf [64]byte
	n := testing.AllocsPerRun(100, func() {
		res, err := rawjson.Member(b, 0, "result")
		if err != nil || !res.Found() {
			t.Fatal(err)
		}
		if _, err := rawjson.Walk(b, res.Start, func(s, e int, esc bool) error {
			_ = rawjson.AppendUnquoted(buf[:0], b[s:e])
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		_ = rawjson.AppendString(buf[:0], "short")
	})
	if n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}
