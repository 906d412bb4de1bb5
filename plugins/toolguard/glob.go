package toolguard

import (
	"fmt"
	"strings"
)

// glob is a compiled name pattern: '*' matches any run of bytes ('/' and
// '.' included, so "github/*" matches every tool a server prefixes so),
// '?' one byte; every other byte matches itself. A pattern without either
// is an exact name.
type glob struct {
	pat   string
	exact bool
}

// compileGlob compiles p; "" is refused unless allowEmpty (a caller may be
// unknown: "" matches exactly that).
func compileGlob(key, p string, allowEmpty bool) (glob, error) {
	if p == "" && !allowEmpty {
		return glob{}, fmt.Errorf("%s: empty pattern", key)
	}
	return glob{pat: p, exact: !strings.ContainsAny(p, "*?")}, nil
}

func (g glob) match(s string) bool {
	if g.exact {
		return g.pat == s
	}
	p := g.pat
	// Iterative matching with one backtrack point: linear for patterns of
	// single stars, never exponential.
	pi, si, star, mark := 0, 0, -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			pi++
			si++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}

// globs is a list of patterns; an empty list matches everything.
type globs []glob

func compileGlobs(key string, ps []string, allowEmpty bool) (globs, error) {
	out := make(globs, 0, len(ps))
	for i, p := range ps {
		g, err := compileGlob(fmt.Sprintf("%s[%d]", key, i), p, allowEmpty)
		if err != nil {
			return nil, err
		}
		out = append(out, g)
	}
	return out, nil
}

func (gs globs) match(s string) bool {
	if len(gs) == 0 {
		return true
	}
	for _, g := range gs {
		if g.match(s) {
			return true
		}
	}
	return false
}

// hostPattern matches a URL host: an exact name, or "*.example.com" for
// every subdomain of example.com (not example.com itself). Compared in
// lower case.
type hostPattern struct {
	suffix string // ".example.com" for a wildcard
	exact  string
}

func compileHost(key, p string) (hostPattern, error) {
	p = strings.ToLower(strings.TrimSpace(p))
	switch {
	case p == "":
		return hostPattern{}, fmt.Errorf("%s: empty host", key)
	case strings.HasPrefix(p, "*."):
		return hostPattern{suffix: p[1:]}, nil
	case strings.ContainsAny(p, "*/:@ "):
		return hostPattern{}, fmt.Errorf("%s: %q: want a host name (example.com) or *.example.com", key, p)
	}
	return hostPattern{exact: p}, nil
}

func (h hostPattern) match(host string) bool {
	if h.exact != "" {
		return host == h.exact
	}
	return len(host) > len(h.suffix) && strings.HasSuffix(host, h.suffix)
}
