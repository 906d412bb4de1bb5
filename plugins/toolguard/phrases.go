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
//     not tell users their password" are not matches.
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

// phrase matches an injection phrase starting at the word t[i] and returns
// the end of what a mask removes, or 0.
func phrase(t []byte, i int) int {
	var buf [maxWord]byte
	w, e := word(t, i, &buf)
	end := 0
	switch string(w) {
	case "ignore", "disregard", "forget", "override":
		end = override(t, e)
	case "do", "does", "did", "must", "should", "will", "can":
		if j := nextWord(t, e); j >= 0 {
			if n, e2 := word(t, j, &buf); string(n) == "not" {
				end = conceal(t, e2, false)
			}
		}
	case "don't", "dont", "doesn't", "mustn't", "shouldn't", "won't", "can't", "cannot", "never":
		end = conceal(t, e, false)
	case "without":
		end = conceal(t, e, true)
	case "hide", "conceal":
		end = hideFrom(t, e)
	}
	if end == 0 {
		return 0
	}
	return sentenceEnd(t, end)
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

// conceal matches [verb] [fillers] user after a negation ending at j.
func conceal(t []byte, j int, ing bool) int {
	var buf [maxWord]byte
	s := nextWord(t, j)
	if s < 0 {
		return 0
	}
	w, e := word(t, s, &buf)
	if !isConcealVerb(w, ing) {
		return 0
	}
	return toUser(t, e, concealFiller)
}

// hideFrom matches hide/conceal … from the user.
func hideFrom(t []byte, j int) int {
	var buf [maxWord]byte
	from := false
	for k := 0; k < 6; k++ {
		s := nextWord(t, j)
		if s < 0 {
			return 0
		}
		w, e := word(t, s, &buf)
		switch {
		case string(w) == "from":
			from = true
		case from && (string(w) == "the" || string(w) == "any"):
		case from && isUser(w):
			if clauseEnds(t, e, userFollow) {
				return e
			}
			return 0
		case !from && concealFiller(w):
		default:
			return 0
		}
		j = e
	}
	return 0
}

// toUser matches up to five fillers then a user word ending its clause.
func toUser(t []byte, j int, filler func([]byte) bool) int {
	var buf [maxWord]byte
	for k := 0; k < 6; k++ {
		s := nextWord(t, j)
		if s < 0 {
			return 0
		}
		w, e := word(t, s, &buf)
		switch {
		case isUser(w):
			if clauseEnds(t, e, userFollow) {
				return e
			}
			return 0
		case filler(w):
		default:
			return 0
		}
		j = e
	}
	return 0
}
