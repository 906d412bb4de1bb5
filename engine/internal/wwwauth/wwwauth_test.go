package wwwauth

import (
	"strings"
	"testing"
)

func TestValue(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`Bearer resource_metadata="http://a/b"`, "http://a/b"},
		{`Bearer realm="x",resource_metadata=http://a/b, scope="s"`, "http://a/b"},
		{`Bearer realm="resource_metadata=no", resource_metadata="http://a/\"q"`, `http://a/"q`},
		{`Bearer x_resource_metadata="http://a"`, ""},
		{`Bearer realm="x"`, ""},
		{`Bearer RESOURCE_METADATA = "http://a"`, "http://a"},
		{`Bearer resource_metadata="http://a`, "http://a"}, // unterminated: to the end
		{`Bearer resource_metadata="a\`, `a\`},
		{`Bearer resource_metadata=`, ""},
		{`resource_metadata=x`, "x"},
	} {
		if got := Value(c.in, "resource_metadata"); got != c.want {
			t.Errorf("Value(%s) = %q, want %q", c.in, got, c.want)
		}
	}
}

func TestReplace(t *testing.T) {
	const u = "https://relay/m"
	for _, c := range []struct{ in, want string }{
		{`Bearer resource_metadata="http://a/b"`, `Bearer resource_metadata="https://relay/m"`},
		{`Bearer realm="x", resource_metadata=http://a/b, scope="s"`, `Bearer realm="x", resource_metadata="https://relay/m", scope="s"`},
		{`Bearer realm="resource_metadata=x"`, `Bearer realm="resource_metadata=x"`},
		{`Bearer error="invalid_token"`, `Bearer error="invalid_token"`},
		{`Bearer Resource_Metadata = "q\"x"`, `Bearer Resource_Metadata = "https://relay/m"`},
		{`Bearer resource_metadata="a\`, `Bearer resource_metadata="https://relay/m"`},
	} {
		if got := Replace(c.in, "resource_metadata", u); got != c.want {
			t.Errorf("Replace(%s) = %s, want %s", c.in, got, c.want)
		}
	}
}

// TestNonASCII: offsets are into the value as given. Letters whose lower
// case is longer in UTF-8 (U+023A Ⱥ is 2 bytes, its lower case 3) once
// shifted them, which misread such a value or panicked, in the relay and in
// the agent alike.
func TestNonASCII(t *testing.T) {
	for _, prefix := range []string{strings.Repeat("Ⱥ", 30), "Ⱥ", "\xff\xfe", "İ"} {
		v := `Bearer realm="` + prefix + `", resource_metadata="http://a/b"`
		if got := Value(v, "resource_metadata"); got != "http://a/b" {
			t.Errorf("Value(%q) = %q", v, got)
		}
		want := `Bearer realm="` + prefix + `", resource_metadata="https://relay/m"`
		if got := Replace(v, "resource_metadata", "https://relay/m"); got != want {
			t.Errorf("Replace(%q) = %q", v, got)
		}
	}
}

// FuzzParam: any value yields a span within it, at which Replace puts the
// new value where Value then finds it.
func FuzzParam(f *testing.F) {
	for _, s := range []string{
		`Bearer resource_metadata="http://a/b"`,
		`Bearer realm="resource_metadata=no", resource_metadata="http://a/\"q"`,
		`Bearer resource_metadata=x, scope="s"`,
		`Bearer resource_metadata="a\`,
		strings.Repeat("Ⱥ", 30) + ` resource_metadata="x"`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, v string) {
		const name = "resource_metadata"
		start, end, ok := Param(v, name)
		if !ok {
			if Value(v, name) != "" || Replace(v, name, "u") != v {
				t.Fatalf("no parameter in %q, yet a value or a replacement", v)
			}
			return
		}
		if start < 0 || start > end || end > len(v) {
			t.Fatalf("span [%d, %d) out of %q (%d bytes)", start, end, v, len(v))
		}
		r := Replace(v, name, "u")
		if r[:start] != v[:start] || r[start+3:] != v[end:] {
			t.Fatalf("Replace(%q) = %q changed bytes outside [%d, %d)", v, r, start, end)
		}
		if got := Value(r, name); got != "u" {
			t.Fatalf("Value(Replace(%q)) = %q, want u", v, got)
		}
	})
}
