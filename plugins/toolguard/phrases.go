package toolguard

// Injection phrases. Two shapes, in English, matched word by word (ASCII
// case-insensitive, straight or curly apostrophes, at most a few filler
// words in between, within one sentence):
//
//   - override: ignore | disregard | forget | override, then filler words
//     (all, the, your, previous, prior, above, system, …), then
//     instructions | prompt | rules | directives | guidelines | guardrails |
//     context. The fillers must say which instructions ("previous", "your",
//     "system", …; "all" counts only before instructions, prompts,
//     directives and guardrails), so "ignore all rules" in a linter's
//     option and "the parser will ignore instructions it does not know"
//     are not matches. "ignore the above." is one.
//   - concealment: do not | don't | never | without | must not | should
//     not, then tell | mention | inform | notify | alert | reveal | show |
//     disclose | say (or their -ing forms), then fillers (this, it, about,
//     to, the, …), then user(s) or human(s) ending the clause. Also hide |
//     conceal … from the user. "Never show the user's password" and "do
//     not tell users their password" are not matches. These are matched
//     backwards from the user word, so that the scan stops at few words.
//
// A match is masked from its first word to the end of its sentence.

const maxWord = 24

// word reads the word at t[i] (letters and apostrophes, ’ included) into
// buf in lower case; it returns the word and the index past it. A word
// longer than buf is returned empty. (Words stay []byte and are compared
// in switch string(w) statements, which do not allocate: this runs at a
// good share of all words in a standard-Go guest.)
func word(t []byte, i int, buf *[maxWord]byte) ([]byte, int) {
	n := 0
	j := i
	for j < len(t) {
		c := t[j]
		switch {
		case isLetter(c):
			c = lower(c)
			j++
		case c == '\'':
			j++
		case c == 0xe2 && j+2 < len(t) && t[j+1] == 0x80 && t[j+2] == 0x99: // ’
			c = '\''
			j += 3
		default:
			goto done
		}
		if n < maxWord {
			buf[n] = c
		}
		n++
	}
done:
	if n > maxWord {
		return nil, j
	}
	return buf[:n], j
}

// nextWord returns the start of the next word after j within the same
// clause, or -1: only spaces, commas and markdown emphasis may lie between.
func nextWord(t []byte, j int) int {
	for k := 0; j < len(t) && k < 16; k++ {
		switch c := t[j]; {
		case isLetter(c):
			return j
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '*' || c == '_' || c == '"' || c == '`':
			j++
		default:
			return -1
		}
	}
	return -1
}

// clauseEnds reports whether the clause ends at j: the end of the text,
// punctuation, or a word that starts a new clause.
func clauseEnds(t []byte, j int, follow func([]byte) bool) bool {
	for j < len(t) && (t[j] == ' ' || t[j] == '\t' || t[j] == '*' || t[j] == '_' || t[j] == '"' || t[j] == '`') {
		j++
	}
	if j >= len(t) {
		return true
	}
	switch t[j] {
	case '.', ',', ';', ':', '!', '?', ')', '\n', '\r', '-':
		return true
	}
	if !isLetter(t[j]) || follow == nil {
		return false
	}
	var buf [maxWord]byte
	w, _ := word(t, j, &buf)
	return follow(w)
}

// sentenceEnd returns the end of the sentence holding position j: a line
// break, or '.', '!' or '?' before a space or the end (so "evil.test" and
// "v1.2" do not end it).
func sentenceEnd(t []byte, j int) int {
	for ; j < len(t); j++ {
		switch t[j] {
		case '\n':
			return j + 1
		case '.', '!', '?':
			if j+1 == len(t) || t[j+1] == ' ' || t[j+1] == '\n' || t[j+1] == '\t' || t[j+1] == '\r' || t[j+1] == '"' || t[j+1] == ')' {
				return j + 1
			}
		}
	}
	return len(t)
}

// phrase matches an injection phrase around the word at t[i] (an anchor:
// an override verb, or the user word a concealment ends with) and returns
// the range a mask removes, or (0, 0).
func phrase(t []byte, i int) (int, int) {
	var buf [maxWord]byte
	w, e := word(t, i, &buf)
	switch string(w) {
	case "ignore", "disregard", "forget", "override":
		if end := override(t, e); end > 0 {
			return i, sentenceEnd(t, end)
		}
	case "user", "users", "human", "humans":
		if clauseEnds(t, e, userFollow) {
			if s := concealBefore(t, i); s >= 0 {
				return s, sentenceEnd(t, e)
			}
		}
	}
	return 0, 0
}

// maxBack is how many words concealBefore reads back from the user word.
const maxBack = 10

// backWords returns the starts and ends of up to maxBack words before
// t[i], nearest first, within one clause (the separators nextWord allows).
func backWords(t []byte, i int, out *[maxBack][2]int) int {
	n := 0
	j := i
	for n < maxBack {
		k := j
		for k > 0 {
			c := t[k-1]
			if c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',' || c == '*' || c == '_' || c == '"' || c == '`' {
				k--
				continue
			}
			break
		}
		if k == j && n > 0 || k == 0 {
			return n
		}
		e := k
		for k > 0 {
			c := t[k-1]
			switch {
			case isLetter(c) || c == '\'':
				k--
				continue
			case c == 0x99 && k >= 3 && t[k-2] == 0x80 && t[k-3] == 0xe2: // ’
				k -= 3
				continue
			}
			break
		}
		if k == e {
			return n
		}
		out[n] = [2]int{k, e}
		n++
		j = k
	}
	return n
}

// concealBefore matches the concealment shapes ending at the user word
// t[i] and returns where the match starts, or -1.
func concealBefore(t []byte, i int) int {
	var ws [maxBack][2]int
	n := backWords(t, i, &ws)
	var buf [maxWord]byte
	at := func(k int) []byte {
		if k >= n {
			return nil
		}
		w, e := word(t, ws[k][0], &buf)
		if e != ws[k][1] {
			return nil
		}
		return w
	}
	// hide | conceal … from [the | any] user
	k := 0
	if w := at(k); string(w) == "the" || string(w) == "any" {
		k++
	}
	if string(at(k)) == "from" {
		for j := k + 1; j < n && j <= k+6; j++ {
			w := at(j)
			if string(w) == "hide" || string(w) == "conceal" {
				return ws[j][0]
			}
			if !concealFiller(w) {
				break
			}
		}
	}
	// negation, verb, up to five fillers, user
	for j := 0; j < n && j <= 5; j++ {
		w := at(j)
		switch {
		case isConcealVerb(w, false):
			switch neg := at(j + 1); string(neg) {
			case "not":
				switch string(at(j + 2)) {
				case "do", "does", "did", "must", "should", "will", "can":
					return ws[j+2][0]
				}
			case "don't", "dont", "doesn't", "mustn't", "shouldn't", "won't", "can't", "cannot", "never":
				return ws[j+1][0]
			}
			return -1
		case isConcealVerb(w, true):
			if string(at(j+1)) == "without" {
				return ws[j+1][0]
			}
			return -1
		case !concealFiller(w):
			return -1
		}
	}
	return -1
}

func override(t []byte, j int) int {
	var buf [maxWord]byte
	strong, all, fillers := false, false, 0
	for k := 0; k < 6; k++ {
		s := nextWord(t, j)
		if s < 0 {
			return 0
		}
		w, e := word(t, s, &buf)
		switch string(w) {
		case "instruction", "instructions", "prompt", "prompts", "directive", "directives", "guardrail", "guardrails":
			if strong || all {
				return e
			}
			return 0
		case "rule", "rules", "guideline", "guidelines", "context", "direction", "directions":
			if strong {
				return e
			}
			return 0
		case "above":
			if fillers > 0 && clauseEnds(t, e, func(w []byte) bool { return string(w) == "and" || string(w) == "then" || string(w) == "instead" }) {
				return e
			}
			strong = true
		case "previous", "prior", "earlier", "preceding", "your", "system", "original", "initial", "developer", "former", "safety":
			strong = true
		case "all":
			all = true
		case "the", "any", "my", "of", "other", "these", "those", "every", "existing", "current":
		default:
			return 0
		}
		fillers++
		j = e
	}
	return 0
}

func isConcealVerb(w []byte, ing bool) bool {
	if ing {
		switch string(w) {
		case "telling", "mentioning", "informing", "notifying", "alerting", "revealing", "showing", "disclosing", "saying", "letting":
			return true
		}
		return false
	}
	switch string(w) {
	case "tell", "mention", "inform", "notify", "alert", "reveal", "show", "disclose", "say", "let":
		return true
	}
	return false
}

func concealFiller(w []byte) bool {
	switch string(w) {
	case "this", "that", "it", "these", "those", "anything", "any", "about", "to", "the", "of", "a", "an",
		"step", "steps", "action", "actions", "instruction", "instructions", "tool", "call", "calls",
		"request", "requests", "or", "and", "your", "note", "fact", "detail", "details", "know":
		return true
	}
	return false
}

func isUser(w []byte) bool {
	switch string(w) {
	case "user", "users", "human", "humans":
		return true
	}
	return false
}

func userFollow(w []byte) bool {
	switch string(w) {
	case "about", "that", "this", "and", "or", "until", "unless", "because", "since", "even", "as", "so",
		"anything", "it", "what", "how", "why", "when", "where", "which", "either", "in", "at", "of":
		return true
	}
	return false
}
