package redact

import (
	"bytes"
	"strings"
)

// Byte classes.
const (
	cWord   = 1 << iota // [A-Za-z0-9_]
	cUpper              // [A-Z]
	cDigit              // [0-9]
	cB64                // base64url: [A-Za-z0-9_-]
	cLocal              // email local part: [A-Za-z0-9._%+-]
	cHost               // domain label: [A-Za-z0-9-]
	cBearer             // bearer token: [A-Za-z0-9-._~+/]
	cAlnum              // [A-Za-z0-9]
	cStart              // can begin a word-start detector: [A-Z0-9begrsx]
	cScheme             // URL scheme: [A-Za-z0-9+.-]
)

var class [256]uint16

// authority classifies the bytes connString looks at after "://": 0 for
// bytes it skips, so its scan is one table look-up per byte (a switch per
// byte costs several times more in a standard-Go Wasm guest).
var authority = [256]uint8{':': 1, '@': 2, '/': 3, '?': 3, '#': 3, ' ': 3, '\\': 3, '"': 3}

// hot marks the byte pairs scanString must stop at: escapes, the triggers of
// the punctuation detectors, and the first two bytes of every word-start
// detector. Pairs rather than single bytes because letters like 'e' and 's'
// start detectors (eyJ, sk-) and are everywhere in prose, while "ey" and "sk"
// are rare: in a standard-Go Wasm guest every stop is expensive.
var hot [1 << 16]uint8

func pair(a, b byte) uint16 { return uint16(a)<<8 | uint16(b) }

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
		var v uint16
		if b >= 'A' && b <= 'Z' || b >= '0' && b <= '9' || strings.IndexByte("begrsx", b) >= 0 {
			v |= cStart
		}
		if alnum {
			v |= cWord | cB64 | cLocal | cHost | cBearer | cAlnum
		}
		if b >= 'A' && b <= 'Z' {
			v |= cUpper
		}
		if b >= '0' && b <= '9' {
			v |= cDigit
		}
		switch b {
		case '_':
			v |= cWord | cB64 | cLocal
		case '-':
			v |= cB64 | cLocal | cHost | cBearer
		case '.':
			v |= cLocal | cBearer
		case '%', '+':
			v |= cLocal
		}
		switch b {
		case '_', '~', '+', '/':
			v |= cBearer
		}
		if alnum || b == '+' || b == '.' || b == '-' {
			v |= cScheme
		}
		class[c] = v
	}
	for c := 0; c < 256; c++ {
		a := byte(c)
		for d := 0; d < 256; d++ {
			n := byte(d)
			upper := func(x byte) bool { return x >= 'A' && x <= 'Z' }
			digit := func(x byte) bool { return x >= '0' && x <= '9' }
			var h bool
			switch {
			case a == '\\' || a == '@':
				h = true
			case a == '-':
				h = n == '-'
			case a == '+' || a == '(':
				h = digit(n)
			case a == ':' && n == '/':
				h = true
			case (a == 'y' || a == 'Y') && (n == ':' || n == '='):
				h = true // "…secret_access_key: <40 chars>"
			case a >= 'a' && a <= 'z' || upper(a) || digit(a) || a == '_' || a == '.':
				switch string([]byte{a, n}) {
				case "sk", "rk", "gh", "gi", "xo", "ey", "be":
					h = true
				}
			default: // a boundary byte: a digit or a capital may start a token
				h = digit(n) || upper(n)
			}
			if h {
				hot[pair(a, n)] = 1
			}
		}
	}
}

func is(c byte, m uint16) bool { return class[c]&m != 0 }

// blocksStart: a token cannot start right after these (so "task-sk-list" and
// "3.14159…" are not token starts).
func blocksStart(c byte) bool { return is(c, cWord) || c == '-' || c == '.' }

// run returns the end of the run of bytes of class m starting at i (< e).
func run(b []byte, i, e int, m uint16) int {
	for i < e && class[b[i]]&m != 0 {
		i++
	}
	return i
}

// endsWord reports whether position j (the byte after a token) is a token
// boundary: the end of the string or a byte that is not a word character.
func endsWord(b []byte, j, e int) bool { return j >= e || !is(b[j], cWord) }

// scanString finds matches in the raw contents b[s:e] of one JSON string. A
// match range never includes a quote and never splits an escape sequence.
func (r *Redactor) scanString(b []byte, s, e int) {
	escEnd := s   // index just past the last escape sequence (a token boundary)
	matchEnd := s // index just past the last match
	// try attempts the word-start detectors at t, which must be a token
	// boundary; it reports the end of a match, or 0.
	try := func(t int) int {
		if t < e && plausible(b, t, e) {
			if z := r.wordStart(b, t, s, e); z > t {
				return z
			}
		}
		return 0
	}
	i := s
	if z := try(s); z > 0 {
		i, matchEnd = z, z
	}
	for i < e {
		// Skip to the next hot pair, eight at a time where possible: this
		// loop is where a clean message spends its time. b[e] is the closing
		// quote, so b[i+1] is always readable.
		for i+8 <= e {
			w := b[i : i+9 : i+9]
			if hot[pair(w[0], w[1])]|hot[pair(w[1], w[2])]|hot[pair(w[2], w[3])]|hot[pair(w[3], w[4])]|
				hot[pair(w[4], w[5])]|hot[pair(w[5], w[6])]|hot[pair(w[6], w[7])]|hot[pair(w[7], w[8])] != 0 {
				break
			}
			i += 8
		}
		for i < e && hot[pair(b[i], b[i+1])] == 0 {
			i++
		}
		if i >= e {
			break
		}
		c := b[i]
		if c == '\\' {
			i += 2
			if i-1 < e && b[i-1] == 'u' {
				i += 4
			}
			if i > e {
				i = e
			}
			escEnd = i
			if z := try(i); z > 0 {
				i, matchEnd = z, z
			}
			continue
		}
		if (c == 'y' || c == 'Y') && (b[i+1] == ':' || b[i+1] == '=') && i-2 >= s && // "…key:"
			b[i-1]|0x20 == 'e' && b[i-2]|0x20 == 'k' && r.enabled[KindAWSSecretKey] {
			if a, z := awsSecretAfterKeyword(b, i, s, e); z > 0 {
				r.add(a, z, int(KindAWSSecretKey))
				i, matchEnd = z, z
				continue
			}
		}
		if is(c, cWord) { // a letter pair such as "sk" or "ey"
			if i == escEnd || i == s || !blocksStart(b[i-1]) {
				if z := try(i); z > 0 {
					i, matchEnd = z, z
					continue
				}
			}
			i++
			continue
		}
		switch c {
		case '@':
			if r.enabled[KindEmail] {
				if a, z := email(b, i, max(s, escEnd, matchEnd), e); z > 0 {
					r.add(a, z, int(KindEmail))
					i, matchEnd = z, z
					continue
				}
			}
		case ':':
			if r.enabled[KindConnectionString] {
				if a, z := connString(b, i, max(s, escEnd, matchEnd), e); z > 0 {
					r.add(a, z, int(KindConnectionString))
					i, matchEnd = z, z
					continue
				}
			}
		case '+', '(':
			if r.enabled[KindPhone] && (i == s || i == escEnd || !blocksStart(b[i-1])) {
				if z := phone(b, i, e); z > 0 {
					r.add(i, z, int(KindPhone))
					i, matchEnd = z, z
					continue
				}
			}
		case '-':
			if r.enabled[KindPrivateKey] {
				if z := pem(b, i, e); z > 0 {
					r.add(i, z, int(KindPrivateKey))
					i, matchEnd = z, z
					continue
				}
			}
		}
		// A boundary byte before a digit or capital: a token may start next.
		if !blocksStart(c) {
			if z := try(i + 1); z > 0 {
				i, matchEnd = z, z
				continue
			}
		}
		i++
	}
	if len(r.custom) > 0 {
		r.scanCustom(b, s, e)
	}
}

// plausible is a cheap filter run before wordStart at a token start t: most
// numbers and capitalised words are rejected here, without the cost of the
// detector calls (high in a Wasm guest).
func plausible(b []byte, t, e int) bool {
	c := b[t]
	switch {
	case c >= '0' && c <= '9':
		// A card has 13+ digits, ungrouped or grouped from 4; a NANP phone
		// starts ddd<sep> or 1<sep>.
		j := t
		for j < e && j-t < 13 && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		n := j - t
		if n >= 13 {
			return true
		}
		if j >= e {
			return false
		}
		// Grouped cards (4-4…, 4-6-5) and NANP phones (ddd-ddd-dddd,
		// 1-ddd-ddd-dddd) all go on with three digits after the separator,
		// which dates (2024-05-01) and versions (1.2.3) do not.
		x := b[j]
		sep := x == ' ' || x == '-' || x == '.'
		return sep && (n == 4 || n == 3 || n == 1 && c == '1') && j+3 < e &&
			is(b[j+1], cDigit) && is(b[j+2], cDigit) && is(b[j+3], cDigit)
	case c >= 'A' && c <= 'Z':
		c2 := b[t+1]
		if c == 'A' && (c2 == 'K' || c2 == 'S' || c2 == 'I') || c == 'B' && c2 == 'e' {
			return true
		}
		return t+3 < e && c2 >= 'A' && c2 <= 'Z' && b[t+2] >= '0' && b[t+2] <= '9' && b[t+3] >= '0' && b[t+3] <= '9'
	}
	return is(c, cWord)
}

func (r *Redactor) add(a, z, k int) { r.matches = append(r.matches, match{start: a, end: z, kind: k}) }

// wordStart tries every detector that can start at the word beginning at i
// and returns the end of the match (recorded), or i.
func (r *Redactor) wordStart(b []byte, i, s, e int) int {
	c := b[i]
	try := func(k Kind, z int) bool {
		if z > i {
			r.add(i, z, int(k))
			return true
		}
		return false
	}
	switch {
	case c == 'A':
		if r.enabled[KindAWSAccessKey] && try(KindAWSAccessKey, awsKey(b, i, e)) {
			return r.last()
		}
		if r.enabled[KindGoogleAPIKey] && try(KindGoogleAPIKey, fixedTail(b, i, e, "AIza", cB64, 35, 35)) {
			return r.last()
		}
	case c == 's':
		if r.enabled[KindOpenAIKey] && try(KindOpenAIKey, fixedTail(b, i, e, "sk-", cB64, 20, 512)) {
			return r.last()
		}
		if r.enabled[KindStripeKey] && try(KindStripeKey, fixedTail(b, i, e, "sk_live_", cAlnum, 16, 256)) {
			return r.last()
		}
	case c == 'r':
		if r.enabled[KindStripeKey] && try(KindStripeKey, fixedTail(b, i, e, "rk_live_", cAlnum, 16, 256)) {
			return r.last()
		}
	case c == 'g':
		if r.enabled[KindGitHubToken] && try(KindGitHubToken, githubToken(b, i, e)) {
			return r.last()
		}
	case c == 'x':
		if r.enabled[KindSlackToken] && try(KindSlackToken, slackToken(b, i, e)) {
			return r.last()
		}
	case c == 'e':
		if r.enabled[KindJWT] && try(KindJWT, jwt(b, i, e)) {
			return r.last()
		}
	case c >= '0' && c <= '9':
		if r.enabled[KindCard] && try(KindCard, card(b, i, e)) {
			return r.last()
		}
		if r.enabled[KindPhone] && try(KindPhone, phone(b, i, e)) {
			return r.last()
		}
		return i
	}
	if (c == 'B' || c == 'b') && r.enabled[KindBearerToken] {
		if a, z := bearer(b, i, e); z > 0 {
			r.add(a, z, int(KindBearerToken))
			return z
		}
	}
	if is(c, cUpper) && r.enabled[KindIBAN] && try(KindIBAN, iban(b, i, e)) {
		return r.last()
	}
	return i
}

func (r *Redactor) last() int { return r.matches[len(r.matches)-1].end }

func hasPrefixAt(b []byte, i, e int, p string) bool {
	return e-i >= len(p) && string(b[i:i+len(p)]) == p
}

// fixedTail matches prefix followed by min..max bytes of class m, ending at a
// word boundary. It returns the end, or 0.
func fixedTail(b []byte, i, e int, prefix string, m uint16, min, max int) int {
	if !hasPrefixAt(b, i, e, prefix) {
		return 0
	}
	j := i + len(prefix)
	z := run(b, j, e, m)
	if n := z - j; n < min || n > max || !endsWord(b, z, e) {
		return 0
	}
	return z
}

// awsKey: AKIA or ASIA followed by exactly 16 of [A-Z0-9].
func awsKey(b []byte, i, e int) int {
	if !hasPrefixAt(b, i, e, "AKIA") && !hasPrefixAt(b, i, e, "ASIA") {
		return 0
	}
	j := i + 4
	z := j
	for z < e && (is(b[z], cUpper) || is(b[z], cDigit)) {
		z++
	}
	if z-j != 16 || !endsWord(b, z, e) {
		return 0
	}
	return z
}

func githubToken(b []byte, i, e int) int {
	if z := fixedTail(b, i, e, "github_pat_", cWord, 22, 255); z > 0 {
		return z
	}
	if e-i < 4 || b[i+1] != 'h' || b[i+3] != '_' {
		return 0
	}
	switch b[i+2] {
	case 'p', 'o', 's', 'u', 'r':
		return fixedTail(b, i, e, string(b[i:i+4]), cAlnum, 30, 255)
	}
	return 0
}

func slackToken(b []byte, i, e int) int {
	if e-i < 5 || string(b[i:i+3]) != "xox" || b[i+4] != '-' {
		return 0
	}
	switch b[i+3] {
	case 'a', 'b', 'p', 'r', 's':
	default:
		return 0
	}
	z := run(b, i+5, e, cAlnum|cB64)
	if z-(i+5) < 10 || !endsWord(b, z, e) {
		return 0
	}
	return z
}

// bearer matches "Bearer <token>" (token of 16+ chars) and returns the token's
// range.
func bearer(b []byte, i, e int) (int, int) {
	if e-i < 7 || (string(b[i:i+7]) != "Bearer " && string(b[i:i+7]) != "bearer ") {
		return 0, 0
	}
	a := i + 7
	z := run(b, a, e, cBearer)
	for z < e && b[z] == '=' {
		z++
	}
	if z-a < 16 || !endsWord(b, z, e) {
		return 0, 0
	}
	return a, z
}

// pem matches a "-----BEGIN … PRIVATE KEY-----" block up to its END line (or
// the end of the string).
func pem(b []byte, i, e int) int {
	if !hasPrefixAt(b, i, e, "-----BEGIN ") {
		return 0
	}
	j := i + len("-----BEGIN ")
	lim := min(e, j+64)
	k := bytes.Index(b[j:lim], []byte("PRIVATE KEY-----"))
	if k < 0 {
		return 0
	}
	j += k + len("PRIVATE KEY-----")
	k = bytes.Index(b[j:e], []byte("-----END "))
	if k < 0 {
		return e
	}
	j += k + len("-----END ")
	k = bytes.Index(b[j:min(e, j+64)], []byte("-----"))
	if k < 0 {
		return e
	}
	return j + k + 5
}

// jwt matches header.payload.signature, each base64url, header and payload
// starting with eyJ, the header decoding to a JSON object.
func jwt(b []byte, i, e int) int {
	if !hasPrefixAt(b, i, e, "eyJ") {
		return 0
	}
	h := run(b, i, e, cB64)
	if h >= e || b[h] != '.' || !b64Len(h-i) || !b64Object(b[i:h]) {
		return 0
	}
	p := h + 1
	if !hasPrefixAt(b, p, e, "eyJ") {
		return 0
	}
	pz := run(b, p, e, cB64)
	if pz >= e || b[pz] != '.' || !b64Len(pz-p) {
		return 0
	}
	s := pz + 1
	z := run(b, s, e, cB64)
	if z == s || !b64Len(z-s) {
		return 0
	}
	if z < e && (b[z] == '+' || b[z] == '/' || b[z] == '=' || b[z] == '.' || is(b[z], cWord)) {
		return 0 // standard base64 or a fourth segment: not a JWT
	}
	return z
}

func b64Len(n int) bool { return n > 0 && n%4 != 1 }

func b64Val(c byte) int {
	switch {
	case c >= 'A' && c <= 'Z':
		return int(c - 'A')
	case c >= 'a' && c <= 'z':
		return int(c-'a') + 26
	case c >= '0' && c <= '9':
		return int(c-'0') + 52
	case c == '-':
		return 62
	case c == '_':
		return 63
	}
	return -1
}

// b64Object decodes a base64url segment (without padding) and reports whether
// it is a JSON object: "{" … "}". Headers over 1 KiB are refused.
func b64Object(seg []byte) bool {
	if len(seg) > 1024 {
		return false
	}
	var last byte
	var acc, bits uint
	for _, c := range seg {
		v := b64Val(c)
		if v < 0 {
			return false
		}
		acc = acc<<6 | uint(v)
		bits += 6
		if bits >= 8 {
			bits -= 8
			d := byte(acc >> bits)
			acc &= 1<<bits - 1
			if last == 0 && d != '{' {
				return false
			}
			if d != ' ' && d != '\t' && d != '\r' && d != '\n' {
				last = d
			}
		}
	}
	return last == '}'
}

// email matches local@domain around the '@' at i; lo bounds how far back the
// local part may reach. It returns the range, or (0, 0).
func email(b []byte, at, lo, e int) (int, int) {
	a := at
	for a > lo && a > at-64 && is(b[a-1], cLocal) {
		a--
	}
	for a < at && (b[a] == '.' || b[a] == '-' || b[a] == '+') {
		a++
	}
	if a == at || b[at-1] == '.' || (a >= 2 && b[a-1] == '/' && b[a-2] == '/') {
		return 0, 0 // nothing, or the user of a URL (scheme://user@host)
	}
	// domain: labels of [A-Za-z0-9-], at least two, the last 2+ letters.
	j := at + 1
	labels, lastStart, z := 0, j, j
	for j < e {
		k := run(b, j, e, cHost)
		if k == j || b[j] == '-' || b[k-1] == '-' {
			break
		}
		labels++
		lastStart, z = j, k
		if k+1 < e && b[k] == '.' && is(b[k+1], cAlnum) {
			j = k + 1
			continue
		}
		break
	}
	if labels < 2 || z-lastStart < 2 {
		return 0, 0
	}
	for _, c := range b[lastStart:z] {
		if is(c, cDigit) || c == '-' {
			return 0, 0
		}
	}
	if z < e && (is(b[z], cWord) || b[z] == '@') {
		return 0, 0
	}
	return a, z
}

// connString matches scheme://user:password@ around the ':' at i and returns
// the password's range.
func connString(b []byte, colon, lo, e int) (int, int) {
	if !hasPrefixAt(b, colon, e, "://") {
		return 0, 0
	}
	a := colon
	for a > lo && class[b[a-1]]&cScheme != 0 {
		a--
	}
	if colon-a < 2 || !(b[a] >= 'a' && b[a] <= 'z' || b[a] >= 'A' && b[a] <= 'Z') {
		return 0, 0
	}
	u := colon + 3
	lim := min(e, u+512)
	pw := -1
	for j := u; j < lim; j++ {
		for j < lim && authority[b[j]] == 0 {
			j++
		}
		if j == lim {
			break
		}
		switch authority[b[j]] {
		case 1: // ':'
			if pw < 0 {
				pw = j + 1
			}
		case 2: // '@'
			if pw < 0 || pw == j {
				return 0, 0
			}
			return pw, j
		default:
			return 0, 0
		}
	}
	return 0, 0
}

// card matches 13–19 digits that pass the Luhn check, either ungrouped or in
// groups separated by single spaces or dashes: 4-4-4-4[-3] or Amex's 4-6-5.
func card(b []byte, i, e int) int {
	var digits [19]byte
	var groups [8]int
	n, ng, j, z := 0, 0, i, i
	var sep byte
	for j < e {
		c := b[j]
		if is(c, cDigit) {
			if n == 19 {
				return 0
			}
			digits[n] = c - '0'
			n++
			groups[ng]++
			j++
			z = j
			continue
		}
		if (c == ' ' || c == '-') && j+1 < e && is(b[j+1], cDigit) && (sep == 0 || sep == c) && ng < len(groups)-1 {
			sep = c
			ng++
			j++
			continue
		}
		break
	}
	if n < 13 || !endsWord(b, z, e) {
		return 0
	}
	if z+1 < e && (b[z] == '.' || b[z] == ',') && is(b[z+1], cDigit) {
		return 0
	}
	if ng > 0 && !cardGroups(groups[:ng+1]) {
		return 0
	}
	sum := 0
	for k := 0; k < n; k++ {
		d := int(digits[n-1-k])
		if k%2 == 1 {
			d *= 2
			if d > 9 {
				d -= 9
			}
		}
		sum += d
	}
	if sum%10 != 0 {
		return 0
	}
	return z
}

func cardGroups(g []int) bool {
	if len(g) == 3 && g[0] == 4 && g[1] == 6 && (g[2] == 5 || g[2] == 4) {
		return true
	}
	for k, n := range g {
		if n != 4 && !(k == len(g)-1 && n == 3 && len(g) == 5) {
			return false
		}
	}
	return len(g) == 4 || len(g) == 5
}

// phone matches an international number (+ and 8–15 digits with separators)
// or a North American one ((555) 123-4567, 555-123-4567, 1-555-123-4567).
func phone(b []byte, i, e int) int {
	if b[i] == '+' {
		n, j, z, seps := 0, i+1, 0, 0
		for j < e {
			c := b[j]
			if is(c, cDigit) {
				n++
				seps = 0
				j++
				z = j
				continue
			}
			if (c == ' ' || c == '-' || c == '.' || c == '(' || c == ')') && seps < 2 && n > 0 {
				seps++
				j++
				continue
			}
			break
		}
		if n < 8 || n > 15 || z == 0 || !endsWord(b, z, e) || !is(b[i+1], cDigit) {
			return 0
		}
		return z
	}
	j := i
	if b[j] == '(' {
		if e-j < 5 || !digitsAt(b, j+1, e, 3) || b[j+4] != ')' {
			return 0
		}
		j += 5
		if j < e && (b[j] == ' ' || b[j] == '-') {
			j++
		}
		if !digitsAt(b, j, e, 3) || j+3 >= e || (b[j+3] != '-' && b[j+3] != ' ' && b[j+3] != '.') || !digitsAt(b, j+4, e, 4) {
			return 0
		}
		z := j + 8
		if !endsWord(b, z, e) || (z+1 < e && (b[z] == '-' || b[z] == '.') && is(b[z+1], cDigit)) {
			return 0
		}
		return z
	}
	if hasPrefixAt(b, j, e, "1") && j+1 < e && (b[j+1] == '-' || b[j+1] == ' ' || b[j+1] == '.') {
		if z := nanp(b, j+2, e); z > 0 {
			return z
		}
	}
	return nanp(b, j, e)
}

// nanp matches ddd-ddd-dddd with one consistent separator (-, . or space).
func nanp(b []byte, j, e int) int {
	if !digitsAt(b, j, e, 3) || j+3 >= e {
		return 0
	}
	sep := b[j+3]
	if sep != '-' && sep != '.' && sep != ' ' {
		return 0
	}
	if !digitsAt(b, j+4, e, 3) || j+7 >= e || b[j+7] != sep || !digitsAt(b, j+8, e, 4) {
		return 0
	}
	z := j + 12
	if !endsWord(b, z, e) || (z+1 < e && (b[z] == sep || b[z] == '.') && is(b[z+1], cDigit)) {
		return 0
	}
	return z
}

// digitsAt reports whether b[j:j+n] are exactly n digits not followed by one.
func digitsAt(b []byte, j, e, n int) bool {
	if e-j < n {
		return false
	}
	for k := j; k < j+n; k++ {
		if !is(b[k], cDigit) {
			return false
		}
	}
	return j+n >= e || !is(b[j+n], cDigit)
}

// iban matches a country code, two check digits and 11–30 alphanumerics
// (uppercase, optionally in space-separated groups of four) passing mod-97.
func iban(b []byte, i, e int) int {
	if e-i < 15 || !is(b[i+1], cUpper) || !is(b[i+2], cDigit) || !is(b[i+3], cDigit) {
		return 0
	}
	var buf [34]byte
	n, j, z, group := 0, i, i, 0
	for j < e {
		c := b[j]
		if is(c, cUpper) || is(c, cDigit) {
			if n == 34 {
				return 0
			}
			buf[n] = c
			n++
			group++
			j++
			z = j
			continue
		}
		if c == ' ' && group == 4 && j+1 < e && (is(b[j+1], cUpper) || is(b[j+1], cDigit)) {
			group = 0
			j++
			continue
		}
		break
	}
	if n < 15 || !endsWord(b, z, e) {
		return 0
	}
	// mod 97 of the number formed by moving the first four chars to the end
	// and replacing letters by 10..35.
	rem := 0
	for k := 0; k < n; k++ {
		c := buf[(k+4)%n]
		if c >= 'A' {
			v := int(c-'A') + 10
			rem = (rem*100 + v) % 97
		} else {
			rem = (rem*10 + int(c-'0')) % 97
		}
	}
	if rem != 1 {
		return 0
	}
	return z
}

// scanCustom runs the custom rules on the windows that start with their prefix.
func (r *Redactor) scanCustom(b []byte, s, e int) {
	for ci := range r.custom {
		c := &r.custom[ci]
		esc := s // escape-aligned cursor: never inside an escape sequence
		for i := s; i < e; {
			k := bytes.Index(b[i:e], c.prefix)
			if k < 0 {
				break
			}
			a := i + k
			for esc < a {
				if b[esc] == '\\' {
					esc += 2
					if esc-1 < e && b[esc-1] == 'u' {
						esc += 4
					}
					continue
				}
				esc++
			}
			if esc != a { // the prefix starts inside an escape sequence
				i = a + 1
				continue
			}
			win := b[a:min(e, a+c.maxLen)]
			if loc := c.re.FindIndex(win); loc != nil {
				if z := a + safeEnd(win, loc[1]); z > a {
					r.add(a, z, int(numBuiltin)+ci)
					i = z
					continue
				}
			}
			i = a + 1
		}
	}
}

// safeEnd moves a match end back so it does not split an escape sequence.
func safeEnd(win []byte, z int) int {
	for k := 0; k < z; {
		if win[k] == '\\' {
			n := 2
			if k+1 < len(win) && win[k+1] == 'u' {
				n = 6
			}
			if k+n > z {
				return k
			}
			k += n
			continue
		}
		k++
	}
	return z
}

// secretKeyName reports whether an identifier names an AWS secret access key:
// it ends, ignoring case and separators, in "secretaccesskey" or "secretkey"
// (aws_secret_access_key, AWS_SECRET_ACCESS_KEY, SecretAccessKey,
// aws_secret_key). A 40-character secret has no shape of its own, so only
// this keyword context marks it.
func secretKeyName(id []byte) bool {
	var tail [15]byte
	n := 0
	for j := len(id) - 1; j >= 0 && n < len(tail); j-- {
		c := id[j]
		if c == '_' || c == '-' {
			continue
		}
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			break
		}
		tail[len(tail)-1-n] = c
		n++
	}
	t := string(tail[len(tail)-n:])
	return strings.HasSuffix(t, "secretaccesskey") || strings.HasSuffix(t, "secretkey")
}

// awsSecretValue returns i+40 when b[i:] starts with exactly 40 characters of
// the AWS secret key alphabet ([A-Za-z0-9/+]) followed by a boundary, or 0.
func awsSecretValue(b []byte, i, e int) int {
	j := i
	for j < e && j-i <= 40 && awsSecretByte(b[j]) {
		j++
	}
	if j-i != 40 || j < e && (awsSecretByte(b[j]) || b[j] == '=') {
		return 0
	}
	return j
}

func awsSecretByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '/' || c == '+'
}

// awsSecretAfterKeyword matches "<secret key name>[:=] <40 chars>" where y at
// i ends the name (the identifier starts at or after s). It returns the
// secret's bounds, or 0, 0. Between separator and value it allows spaces and
// one quote, escaped (\") as it appears inside a JSON string, or single.
func awsSecretAfterKeyword(b []byte, i, s, e int) (int, int) {
	k := i
	for k > s && (is(b[k-1], cWord) || b[k-1] == '-') {
		k--
	}
	if !secretKeyName(b[k : i+1]) {
		return 0, 0
	}
	j := i + 2
	for j < e && b[j] == ' ' {
		j++
	}
	switch {
	case j+1 < e && b[j] == '\\' && b[j+1] == '"':
		j += 2
	case j < e && b[j] == '\'':
		j++
	}
	if z := awsSecretValue(b, j, e); z > 0 {
		return j, z
	}
	return 0, 0
}
