package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/sluicemcp/sluice/engine/wire"
)

// TestVersionIsSemantic: the binary identifies itself with a semantic
// version (User-Agent sluice/<semver>, X-Tunnel-Client-Version), never a bare
// commit hash; the commit is printed by `sluice version`.
func TestVersionIsSemantic(t *testing.T) {
	defer func(v, c string) { version, commit = v, c }(version, commit)
	for _, tc := range []struct{ ldflags, want string }{
		{"", baseVersion + "-dev"},
		{"1474d1f", baseVersion + "-dev"}, // what `git describe --always` gives without tags
		{"v1.4.2", "1.4.2"},
		{"1.4.2-rc.1", "1.4.2-rc.1"},
	} {
		version, commit = tc.ldflags, "0123abc"
		v, c := buildVersion()
		if v != tc.want || !wire.ValidSemver(v) {
			t.Errorf("ldflags version %q: got %q, want %q", tc.ldflags, v, tc.want)
		}
		if c != "0123abc" {
			t.Errorf("commit = %q", c)
		}
		if ua := userAgent(); ua != "sluice/"+tc.want {
			t.Errorf("User-Agent = %q", ua)
		}
		var out bytes.Buffer
		printVersion(&out)
		if first, _, _ := strings.Cut(out.String(), "\n"); first != "sluice "+tc.want || !strings.Contains(out.String(), "commit 0123abc") {
			t.Errorf("sluice version printed %q", out.String())
		}
	}
}
