package jsonscan

import "testing"

func TestTopLevelMember(t *testing.T) {
	tests := []struct {
		doc, key, want string
		ok             bool
	}{
		{`{"resource":"https://a/x","b":1}`, "resource", `"https://a/x"`, true},
		{` { "a" : {"resource":"inner"} , "resource" : "outer" } `, "resource", `"outer"`, true},
		{`{"a":["resource",{"resource":1}],"resource":null}`, "resource", `null`, true},
		{`{"a":"\"resource\":\"x\"","resource":2}`, "resource", `2`, true},
		{`{"a":1}`, "resource", "", false},
		{`["resource"]`, "resource", "", false},
		{`{"a":"unterminated`, "resource", "", false},
		{`{}`, "resource", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.doc, func(t *testing.T) {
			s, e, ok := TopLevelMember([]byte(tt.doc), tt.key)
			if ok != tt.ok || (ok && tt.doc[s:e] != tt.want) {
				t.Fatalf("got %v %q", ok, tt.doc[s:e])
			}
		})
	}
}

func FuzzTopLevelMember(f *testing.F) {
	f.Add([]byte(`{"resource":"x","a":[{"b":"\\""}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		if s, e, ok := TopLevelMember(b, "resource"); ok && (s < 0 || e > len(b) || s >= e) {
			t.Fatalf("bad range %d %d", s, e)
		}
	})
}
