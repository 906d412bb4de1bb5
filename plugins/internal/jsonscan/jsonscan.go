package jsonscan

// TopLevelMember returns the byte range [start, end) of the value of the first
// top-level member named key (compared raw, without unescaping) in the JSON
// object b. ok is false when b is not an object, the key is absent, or the
// document is malformed before the member.
func TopLevelMember(b []byte, key string) (start, end int, ok bool) {
	i := skipWS(b, 0)
	if i >= len(b) || b[i] != '{' {
		return 0, 0, false
	}
	i = skipWS(b, i+1)
	if i < len(b) && b[i] == '}' {
		return 0, 0, false
	}
	for i < len(b) {
		if b[i] != '"' {
			return 0, 0, false
		}
		ke := StringEnd(b, i)
		if ke < 0 {
			return 0, 0, false
		}
		k := b[i+1 : ke-1]
		i = skipWS(b, ke)
		if i >= len(b) || b[i] != ':' {
			return 0, 0, false
		}
		i = skipWS(b, i+1)
		ve := SkipValue(b, i)
		if ve < 0 {
			return 0, 0, false
		}
		if string(k) == key {
			return i, ve, true
		}
		i = skipWS(b, ve)
		if i >= len(b) || b[i] != ',' {
			return 0, 0, false
		}
		i = skipWS(b, i+1)
	}
	return 0, 0, false
}

func skipWS(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// StringEnd returns the index just past the string literal starting at the
// quote b[i], or -1.
func StringEnd(b []byte, i int) int {
	for j := i + 1; j < len(b); j++ {
		switch b[j] {
		case '\\':
			j++
		case '"':
			return j + 1
		}
	}
	return -1
}

// SkipValue returns the index just past the JSON value starting at b[i], or
// -1 when it is malformed or truncated. Nesting is bounded only by len(b).
func SkipValue(b []byte, i int) int {
	if i >= len(b) {
		return -1
	}
	switch b[i] {
	case '"':
		return StringEnd(b, i)
	case '{', '[':
		depth := 0
		for j := i; j < len(b); j++ {
			switch b[j] {
			case '"':
				e := StringEnd(b, j)
				if e < 0 {
					return -1
				}
				j = e - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return -1
	}
	j := i
	for j < len(b) && b[j] != ',' && b[j] != '}' && b[j] != ']' && b[j] != ' ' && b[j] != '\t' && b[j] != '\n' && b[j] != '\r' {
		j++
	}
	if j == i {
		return -1
	}
	return j
}
