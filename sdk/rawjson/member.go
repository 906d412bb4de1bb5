package rawjson

// Span is the byte range [Start, End) of a value in a document. The zero
// Span is a value not found.
type Span struct{ Start, End int }

// Found reports whether the span holds a value.
func (p Span) Found() bool { return p.End > p.Start }

// Lookup finds the values of the named members of the object at b[i]:
// out[n] receives the span of names[n]'s value (out must be at least as
// long as names; a name not present leaves its span alone). Names are
// compared after unescaping, and when a name repeats the last one wins, as
// in the decoders of JavaScript, Go and Python. The whole object is
// checked; Lookup returns the index just past it. On an error the spans in
// out are not to be used.
func Lookup(b []byte, i int, names []string, out []Span) (int, error) {
	var kb [64]byte
	return Members(b, i, func(ks, ke, vs int) (int, error) {
		ve, err := Skip(b, vs)
		if err != nil {
			return 0, err
		}
		k := AppendUnquoted(kb[:0], b[ks:ke])
		for n, name := range names {
			if string(k) == name {
				out[n] = Span{vs, ve}
			}
		}
		return ve, nil
	})
}

// Member returns the span of the value of the member name of the object at
// b[i] (the zero Span when it is absent), as Lookup finds it.
func Member(b []byte, i int, name string) (Span, error) {
	var out [1]Span
	if _, err := Lookup(b, i, []string{name}, out[:]); err != nil {
		return Span{}, err
	}
	return out[0], nil
}
