package binding

import (
	"bytes"
	"errors"
	"unsafe"

	"github.com/sluicemcp/sluice/sdk/rawjson"
)

// encoding/json in a standard-Go guest is slow (reflection on every call);
// a binding reads a handful of members of each request with package
// rawjson and writes its reply by appending, so the common path allocates
// little and decodes nothing it does not need.

// errStop ends an iteration early.
var errStop = errors.New("stop")

// eachMember calls f with the name (unescaped) and the raw value of each
// member of the object b, until f returns false. It reports false when b is not an object or is malformed before f stops.
func eachMember(b []byte, f func(name, val []byte) bool) bool {
	_, err := rawjson.Members(b, 0, func(ks, ke, vs int) (int, error) {
		ve, err := rawjson.Skip(b, vs)
		if err != nil {
			return 0, err
		}
		name := b[ks:ke]
		if bytes.IndexByte(name, '\\') >= 0 { // rare: allocate only then
			name = rawjson.AppendUnquoted(nil, name)
		}
		if !f(name, b[vs:ve]) {
			return 0, errStop
		}
		return ve, nil
	})
	return err == nil || err == errStop
}

// member returns the raw value of the member name of the object b: the
// last one when the name repeats, as clients and filters read it
// (rawjson.Member).
func member(b []byte, name string) ([]byte, bool) {
	sp, err := rawjson.Member(b, 0, name)
	if err != nil || !sp.Found() {
		return nil, false
	}
	return b[sp.Start:sp.End], true
}

// unquote decodes a raw JSON string literal (quotes included) that
// rawjson has checked.
func unquote(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' || raw[len(raw)-1] != '"' {
		return "", false
	}
	s := raw[1 : len(raw)-1]
	if bytes.IndexByte(s, '\\') < 0 {
		return string(s), true
	}
	out := rawjson.AppendUnquoted(make([]byte, 0, len(s)), s)
	return unsafe.String(unsafe.SliceData(out), len(out)), true // out is not used again
}
