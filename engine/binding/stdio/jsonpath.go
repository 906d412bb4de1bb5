package stdio

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
)

var errDuplicateKey = errors.New("duplicate member")

// member finds the value of key in the JSON object obj and returns its byte
// span. It rejects objects that hold key more than once, so the child and the
// binding can never read different members.
func member(obj []byte, key string) (start, end int, found bool, err error) {
	d := json.NewDecoder(bytes.NewReader(obj))
	t, err := d.Token()
	if err != nil {
		return 0, 0, false, err
	}
	if t != json.Delim('{') {
		return 0, 0, false, errors.New("not a JSON object")
	}
	for d.More() {
		kt, err := d.Token()
		if err != nil {
			return 0, 0, false, err
		}
		k, _ := kt.(string)
		off := int(d.InputOffset())
		var raw json.RawMessage
		if err := d.Decode(&raw); err != nil {
			return 0, 0, false, err
		}
		if k != key {
			continue
		}
		if found {
			return 0, 0, false, errDuplicateKey
		}
		end = int(d.InputOffset())
		start = off
		for start < end && strings.IndexByte(" \t\r\n:", obj[start]) >= 0 {
			start++
		}
		found = true
	}
	if _, err := d.Token(); err != nil {
		return 0, 0, false, err
	}
	return start, end, found, nil
}

// path finds the value at a chain of object keys (for example params, _meta,
// progressToken) and returns its absolute span in obj.
func path(obj []byte, keys ...string) (start, end int, found bool, err error) {
	base := 0
	cur := obj
	for i, k := range keys {
		if i > 0 && !isObject(cur) {
			return 0, 0, false, nil
		}
		s, e, ok, err := member(cur, k)
		if err != nil || !ok {
			return 0, 0, false, err
		}
		base, cur = base+s, cur[s:e]
		if len(cur) == 0 {
			return 0, 0, false, nil
		}
	}
	return base, base + len(cur), true, nil
}

// splice returns obj with obj[start:end] replaced by v, in a new slice.
func splice(obj []byte, start, end int, v []byte) []byte {
	out := make([]byte, 0, len(obj)-(end-start)+len(v))
	out = append(out, obj[:start]...)
	out = append(out, v...)
	return append(out, obj[end:]...)
}

// isObject reports whether the raw value at span is a JSON object.
func isObject(b []byte) bool {
	b = bytes.TrimSpace(b)
	return len(b) > 0 && b[0] == '{'
}
