package toolguard

import (
	"slices"
	"unicode/utf8"
)

// Signal is one kind of poisoning signal toolguard looks for in tool
// definitions and tool results.
type Signal uint8

// Signals.
const (
	// SignalHiddenMarkers: markup that frames hidden instructions for a
	// model: <IMPORTANT>, <system>, <instructions>, [INST], <<SYS>>,
	// <|im_start|> and other special tokens.
	SignalHiddenMarkers Signal = iota
	// SignalInjectionPhrases: "ignore previous instructions"-style
	// overrides and "do not tell the user"-style concealment.
	SignalInjectionPhrases
	// SignalInvisibleUnicode: Unicode tag characters (U+E0000..U+E007F,
	// "ASCII smuggling"), zero-width characters, bidirectional overrides
	// and isolates, and runs of variation selectors.
	SignalInvisibleUnicode
	// SignalANSIEscapes: terminal escape sequences, which hide or rewrite
	// text on a terminal.
	SignalANSIEscapes
	// SignalUntrustedURLs: http(s), ws(s) and ftp URLs whose host is not in
	// signals.allowed_hosts (only checked when the list is set).
	SignalUntrustedURLs
	numSignals
)

var signalNames = [numSignals]string{"hidden_markers", "injection_phrases", "invisible_unicode", "ansi_escapes", "untrusted_urls"}

// String returns the signal's config name.
func (s Signal) String() string {
	if s < numSignals {
		return signalNames[s]
	}
	return "signal?"
}

// SignalNames lists the signals' config names.
func SignalNames() []string { return slices.Clone(signalNames[:]) }

// Action is what toolguard does with a signal it finds.
type Action uint8

// Actions, from the weakest.
const (
	ActionOff    Action = iota // not looked for
	ActionRecord               // logged
	ActionMask                 // logged and cut out (invisible characters and escapes are deleted, the rest replaced by a label)
	ActionBlock                // logged, and the tool (in a definition) or the result is blocked
)

var actionNames = [...]string{"off", "record", "mask", "block"}

func (a Action) String() string { return actionNames[a] }

// finding is one signal in a decoded text, at [s, e).
type finding struct {
	sig  Signal
	s, e int
}

// Byte-pair stops: the scan skips every pair of bytes that cannot start a
// signal (a standard-Go Wasm guest pays for every byte it looks at and more
// for every stop, so the common case must be a table look-up per byte). A
// signal may start at t[i] when first[t[i]] & second[t[i+1]] != 0 (t[i+1]
// is 0 at the end of the text): each first byte names the classes of
// second bytes that can follow it. Two tables of 256 entries stay in the
// L1 cache, where one table of every pair (64 KiB) does not on a busy
// machine.
var first, second [256]uint16

// Classes of second bytes.
const (
	sAny   = 1 << iota // any byte: '<' and ESC look further themselves
	sG                 // g G: ig(nore)
	sI                 // i I: di(sregard), [I(NST)
	sO                 // o O: fo(rget)
	sV                 // v V: ov(erride)
	sS                 // s S: us(er)
	sU                 // u U: hu(man)
	sSlash             // '/': "://", [/INST]
	s8x                // 0x80, 0x81: U+2000..U+207F after 0xE2
	sA0                // 0xA0: U+180E after 0xE1, tags and selectors after 0xF3
	sBx                // 0xBB, 0xB8: U+FEFF, U+FE00..U+FE0F after 0xEF
	s9B                // 0x9B: the C1 CSI after 0xC2
)

// phraseAnchors are the first two letters (lower case) of the words a
// phrase detector starts from: the override verbs, and the user words the
// concealment shapes end with (matched backwards from there).
var phraseAnchors = []struct {
	a     byte
	class uint16
}{{'i', sG}, {'d', sI}, {'f', sO}, {'o', sV}, {'u', sS}, {'h', sU}}

func isLetter(c byte) bool { return c|0x20 >= 'a' && c|0x20 <= 'z' }

func isWordByte(c byte) bool { return isLetter(c) || c >= '0' && c <= '9' || c == '_' || c == '\'' }

func init() {
	for b := range second {
		second[b] = sAny
	}
	letter := func(c byte, class uint16) { second[c] |= class; second[c-32] |= class }
	letter('g', sG)
	letter('i', sI)
	letter('o', sO)
	letter('v', sV)
	letter('s', sS)
	letter('u', sU)
	second['/'] |= sSlash
	second[0x80] |= s8x
	second[0x81] |= s8x
	second[0xa0] |= sA0
	second[0xbb] |= sBx
	second[0xb8] |= sBx
	second[0x9b] |= s9B

	first['<'], first[0x1b] = sAny, sAny
	first['['] = sI | sSlash
	first[':'] = sSlash
	first[0xe2], first[0xe1], first[0xf3], first[0xef], first[0xc2] = s8x, sA0, sA0, sBx, s9B
	for _, p := range phraseAnchors {
		first[p.a] |= p.class
		first[p.a-32] |= p.class
	}
}

// stop reports whether a signal may start at t[i] (i < len(t)).
func stop(t []byte, i int) bool {
	f := first[t[i]]
	if f == 0 {
		return false
	}
	var nx byte
	if i+1 < len(t) {
		nx = t[i+1]
	}
	return f&second[nx] != 0
}

// scanner finds signals in decoded text. acts says which are looked for.
type scanner struct {
	acts  *[numSignals]Action
	hosts []hostPattern
}

// scan appends the signals in t to out, in order, not overlapping.
func (sc *scanner) scan(t []byte, out []finding) []finding {
	n := len(t)
	done := 0 // the end of the last finding
	for i := 0; i < n; {
		// Skip to the next stop: one look-up per byte, two at candidates.
		for i+1 < n && (first[t[i]] == 0 || first[t[i]]&second[t[i+1]] == 0) {
			i++
		}
		if i >= n || !stop(t, i) {
			break
		}
		c := t[i]
		s, end := i, 0
		var sig Signal
		switch {
		case c == '<' || c == '[':
			if sc.acts[SignalHiddenMarkers] != ActionOff {
				end, sig = marker(t, i), SignalHiddenMarkers
			}
		case c == 0x1b || c == 0xc2:
			if sc.acts[SignalANSIEscapes] != ActionOff {
				end, sig = ansi(t, i), SignalANSIEscapes
			}
		case c >= 0x80:
			if sc.acts[SignalInvisibleUnicode] != ActionOff {
				e, bad := invisible(t, i)
				if !bad && e > i { // a legitimate sequence: skip all of it
					i = e
					continue
				}
				end, sig = e, SignalInvisibleUnicode
			}
		case c == ':':
			if sc.acts[SignalUntrustedURLs] != ActionOff && len(sc.hosts) > 0 {
				s, end = sc.url(t, i)
				sig = SignalUntrustedURLs
			}
		default:
			if sc.acts[SignalInjectionPhrases] != ActionOff && wordStart(t, i) {
				s, end = phrase(t, i)
				sig = SignalInjectionPhrases
			}
		}
		if end > i {
			s = max(s, done)
			out = append(out, finding{sig: sig, s: s, e: end})
			i, done = end, end
			continue
		}
		i++
	}
	return out
}

// wordStart reports whether a word starts at t[i]: the byte before is not
// part of a word (’ included, as in "don’t").
func wordStart(t []byte, i int) bool {
	if i == 0 {
		return true
	}
	p := t[i-1]
	return !isWordByte(p) && !(p == 0x99 && i >= 3 && t[i-3] == 0xe2 && t[i-2] == 0x80)
}

// lower returns c in ASCII lower case.
func lower(c byte) byte {
	if c >= 'A' && c <= 'Z' {
		return c + 32
	}
	return c
}

// hasFold reports whether t[i:] starts with s (lower-case ASCII),
// ignoring ASCII case.
func hasFold(t []byte, i int, s string) bool {
	if len(t)-i < len(s) {
		return false
	}
	for k := 0; k < len(s); k++ {
		if lower(t[i+k]) != s[k] {
			return false
		}
	}
	return true
}

// indexFold returns the first index >= i where s (lower-case ASCII)
// starts in t, ignoring case, or -1.
func indexFold(t []byte, i int, s string) int {
	for ; i+len(s) <= len(t); i++ {
		if lower(t[i]) == s[0] && hasFold(t, i, s) {
			return i
		}
	}
	return -1
}

// Tag names of hidden-instruction markup (<important>, </system>, …).
var markerTags = []string{"important", "system", "system-reminder", "system-prompt", "system_prompt", "instructions", "hidden", "secret", "admin"}

// marker matches hidden-instruction markup at t[i] ('<' or '[') and returns
// the end of what a mask removes: an opening marker up to its closing
// counterpart (or the end of the text when there is none), a stray closing
// marker by itself. 0 = no marker.
func marker(t []byte, i int) int {
	n := len(t)
	if t[i] == '[' {
		switch {
		case hasFold(t, i, "[inst]"):
			return closeAt(t, i+6, "[/inst]")
		case hasFold(t, i, "[/inst]"):
			return i + 7
		}
		return 0
	}
	if i+1 >= n {
		return 0
	}
	switch t[i+1] {
	case '|': // special tokens: <|im_start|>, <|system|>, <|endoftext|>, …
		j := i + 2
		for j < n && j-i < 40 && (t[j] >= 'a' && t[j] <= 'z' || t[j] == '_' || t[j] >= '0' && t[j] <= '9') {
			j++
		}
		if j == i+2 || j+1 >= n || t[j] != '|' || t[j+1] != '>' {
			return 0
		}
		if string(t[i+2:j]) == "im_start" {
			return closeAt(t, j+2, "<|im_end|>")
		}
		return n // the rest is a forged turn
	case '<': // <<SYS>> … <</SYS>>
		switch {
		case hasFold(t, i, "<<sys>>"):
			return closeAt(t, i+7, "<</sys>>")
		case hasFold(t, i, "<</sys>>"):
			return i + 8
		}
		return 0
	}
	j := i + 1
	closing := t[j] == '/'
	if closing {
		j++
	}
	for _, name := range markerTags {
		if !hasFold(t, j, name) {
			continue
		}
		k := j + len(name)
		if k >= n {
			return 0
		}
		switch t[k] {
		case '>':
		case ' ', '\t', '\n', '\r':
			// Attributes: the tag must close within a short distance.
			m := k
			for m < n && m-k < 128 && t[m] != '>' && t[m] != '<' {
				m++
			}
			if m >= n || t[m] != '>' {
				continue
			}
			k = m
		default:
			continue // <systemPath>, <important-note>…: other names
		}
		if closing {
			return k + 1
		}
		return closeAt(t, k+1, "</"+name)
	}
	return 0
}

// closeAt returns the end of the first closing marker c in t at or after i
// (through its '>' for a tag), or len(t) when there is none.
func closeAt(t []byte, i int, c string) int {
	k := indexFold(t, i, c)
	if k < 0 {
		return len(t)
	}
	e := k + len(c)
	if c[len(c)-1] != '>' && c[len(c)-1] != ']' {
		for e < len(t) && t[e] != '>' {
			e++
		}
		if e < len(t) {
			e++
		}
	}
	return e
}

// ansi matches a terminal escape at t[i]: ESC [ … (CSI), ESC ] … BEL or
// ESC \ (OSC), ESC and one byte, or the C1 CSI U+009B. It returns its end,
// or 0.
func ansi(t []byte, i int) int {
	n := len(t)
	j := i + 1
	if t[i] == 0xc2 {
		if j >= n || t[j] != 0x9b {
			return 0
		}
		j++
		return csiEnd(t, j)
	}
	if j >= n {
		return j
	}
	switch t[j] {
	case '[':
		return csiEnd(t, j+1)
	case ']':
		for k := j + 1; k < n && k-j < 4096; k++ {
			if t[k] == 0x07 {
				return k + 1
			}
			if t[k] == 0x1b && k+1 < n && t[k+1] == '\\' {
				return k + 2
			}
		}
		return min(n, j+4096)
	}
	return j + 1
}

func csiEnd(t []byte, j int) int {
	n := len(t)
	for j < n && t[j] >= 0x20 && t[j] <= 0x3f {
		j++
	}
	if j < n && t[j] >= 0x40 && t[j] <= 0x7e {
		j++
	}
	return j
}

// invisible matches an invisible or direction-changing character (or run
// of them) at t[i]: it returns the end of the sequence it looked at and
// whether that is a signal. Characters that ordinary text uses are left
// alone: a joiner (U+200C, U+200D) between non-ASCII characters (emoji
// sequences, Persian and Indic scripts), LRM and RLM (in right-to-left
// text), a BOM at the very start, a single variation selector (the emoji
// presentation ❤️), and the tag sequence of a subdivision flag (🏴 + tags +
// U+E007F: England, Scotland, Wales).
func invisible(t []byte, i int) (int, bool) {
	r, sz := utf8.DecodeRune(t[i:])
	switch {
	case r == 0x200b, r >= 0x2060 && r <= 0x2064, r == 0x180e:
		return i + sz, true
	case r >= 0x202a && r <= 0x202e, r >= 0x2066 && r <= 0x2069:
		return i + sz, true
	case r == 0xfeff:
		return i + sz, i > 0
	case r == 0x200c || r == 0x200d:
		before := i > 0 && t[i-1] < 0x80 && t[i-1] > 0x20
		after := i+sz < len(t) && t[i+sz] < 0x80 && t[i+sz] > 0x20
		return i + sz, before || after
	case r >= 0xe0000 && r <= 0xe007f:
		j := i
		for j < len(t) {
			r2, s2 := utf8.DecodeRune(t[j:])
			if r2 < 0xe0000 || r2 > 0xe007f {
				break
			}
			j += s2
		}
		return j, !flagTags(t, i, j)
	case isVS(r):
		j := i + sz
		for j < len(t) {
			r2, s2 := utf8.DecodeRune(t[j:])
			if !isVS(r2) {
				break
			}
			j += s2
		}
		return j, j > i+sz // a single selector is ordinary
	}
	return 0, false
}

func isVS(r rune) bool { return r >= 0xfe00 && r <= 0xfe0f || r >= 0xe0100 && r <= 0xe01ef }

// flagTags reports whether the tag run t[i:j] is a subdivision flag's: it
// follows U+1F3F4 (WAVING BLACK FLAG), spells 2..7 lower-case letters or
// digits, and ends with CANCEL TAG (U+E007F).
func flagTags(t []byte, i, j int) bool {
	const blackFlag = "\U0001F3F4"
	if i < len(blackFlag) || string(t[i-len(blackFlag):i]) != blackFlag {
		return false
	}
	n := (j - i) / 4 // every tag is 4 bytes in UTF-8
	if n < 3 || n > 8 || (j-i)%4 != 0 {
		return false
	}
	for k := i; k < j-4; k += 4 {
		r, _ := utf8.DecodeRune(t[k:])
		if c := r - 0xe0000; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
			return false
		}
	}
	r, _ := utf8.DecodeRune(t[j-4:])
	return r == 0xe007f
}

// url checks the URL whose "://" starts at t[i] and returns its range when
// its host is not allowed, else (0, 0).
func (sc *scanner) url(t []byte, i int) (int, int) {
	if i+2 >= len(t) || t[i+1] != '/' || t[i+2] != '/' {
		return 0, 0
	}
	colon := i
	a := colon
	for a > 0 && isLetter(t[a-1]) {
		a--
	}
	switch string(lowerASCII(t[a:colon])) {
	case "http", "https", "ws", "wss", "ftp":
	default:
		return 0, 0
	}
	h := i + 3
	e := h
	for e < len(t) && !urlStop(t[e]) {
		e++
	}
	auth := e
	for k := h; k < e; k++ {
		if t[k] == '/' || t[k] == '?' || t[k] == '#' || t[k] == '\\' {
			auth = k
			break
		}
	}
	host := t[h:auth]
	for k := len(host) - 1; k >= 0; k-- {
		if host[k] == '@' {
			host = host[k+1:]
			break
		}
	}
	if len(host) > 0 && host[0] != '[' {
		for k := range host {
			if host[k] == ':' {
				host = host[:k]
				break
			}
		}
	}
	for len(host) > 0 && host[len(host)-1] == '.' {
		host = host[:len(host)-1]
	}
	if len(host) == 0 {
		return 0, 0
	}
	name := string(lowerASCII(host))
	for _, p := range sc.hosts {
		if p.match(name) {
			return 0, 0
		}
	}
	return a, e
}

// urlStop ends a URL in text: whitespace, quotes, brackets that close
// markdown or HTML around it.
func urlStop(c byte) bool {
	switch c {
	case ' ', '\t', '\n', '\r', '"', '\'', '<', '>', ')', ']', '}', '`', '|':
		return true
	}
	return false
}

func lowerASCII(b []byte) []byte {
	for _, c := range b {
		if c >= 'A' && c <= 'Z' {
			out := make([]byte, len(b))
			for k, c := range b {
				out[k] = lower(c)
			}
			return out
		}
	}
	return b
}
