package toolguard

import "github.com/sluicemcp/sluice/sdk/rawjson"

// toolguard reads messages with package rawjson, on byte offsets into the
// message, so that it edits only the values it must and keeps everything
// else byte for byte. rawjson checks what it walks (a malformed document
// is an error, never a panic), bounds nesting, and lets the last of
// repeated member names win, as clients decode them.

// visitMember calls fn on the value of each top-level member name of the
// object at b[0] (fn returns the value's end) and skips the others: one
// pass over the message.
func visitMember(b []byte, name string, fn func(vs int) (int, error)) error {
	var kb [64]byte
	end, err := rawjson.Members(b, 0, func(ks, ke, vs int) (int, error) {
		if string(rawjson.AppendUnquoted(kb[:0], b[ks:ke])) == name {
			return fn(vs)
		}
		return rawjson.Skip(b, vs)
	})
	if err == nil && rawjson.SkipSpace(b, end) != len(b) {
		err = rawjson.ErrSyntax
	}
	return err
}

// edit replaces b[s:e] with repl.
type edit struct {
	s, e int
	repl []byte
}

// applyEdits returns b with edits (sorted, not overlapping) applied.
func applyEdits(b []byte, edits []edit) []byte {
	n := len(b)
	for _, ed := range edits {
		n += len(ed.repl) - (ed.e - ed.s)
	}
	out := make([]byte, 0, n)
	at := 0
	for _, ed := range edits {
		out = append(out, b[at:ed.s]...)
		out = append(out, ed.repl...)
		at = ed.e
	}
	return append(out, b[at:]...)
}
