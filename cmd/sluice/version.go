package main

import (
	"fmt"
	"io"
	"runtime"
	"runtime/debug"
	"strings"

	"github.com/sluicemcp/sluice/engine/wire"
)

// baseVersion is the semantic version of this source tree. A release build
// sets version to its tag with -ldflags; any other build reports
// baseVersion-dev.
const baseVersion = "0.7.0"

// Set with -ldflags "-X main.version=… -X main.commit=…" (see the Makefile).
var (
	version = ""
	commit  = ""
)

// buildVersion returns the semantic version the binary identifies with
// (User-Agent sluice/<version>, X-Tunnel-Client-Version) and its commit.
// The version is the -ldflags one when it is a semantic version, else the
// module version `go install …@vX.Y.Z` records, else baseVersion-dev: never a
// bare commit hash. The commit comes from -ldflags or the VCS information the
// Go toolchain records, with "+modified" for a dirty tree.
func buildVersion() (v, c string) {
	v, c = strings.TrimPrefix(version, "v"), commit
	bi, ok := debug.ReadBuildInfo()
	if !wire.ValidSemver(v) {
		v = ""
		if ok {
			if mv := strings.TrimPrefix(bi.Main.Version, "v"); wire.ValidSemver(mv) {
				v = mv
			}
		}
	}
	if v == "" {
		v = baseVersion + "-dev"
	}
	if ok && c == "" {
		modified := false
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				c = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
		if c != "" && modified {
			c += "+modified"
		}
	}
	if c == "" {
		c = "unknown"
	}
	return v, c
}

// userAgent is the User-Agent the binary sends: sluice/<semver>.
func userAgent() string {
	v, _ := buildVersion()
	return "sluice/" + v
}

func printVersion(w io.Writer) {
	v, c := buildVersion()
	fmt.Fprintf(w, "sluice %s\ncommit %s\n%s %s/%s\n", v, c, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
