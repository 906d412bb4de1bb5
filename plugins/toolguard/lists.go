package toolguard

import (
	"bytes"
	"crypto/sha256"
	"slices"

	"github.com/sluicemcp/sluice/sdk"
	"github.com/sluicemcp/sluice/sdk/rawjson"
)

func sumString(s string) [32]byte { return sha256.Sum256([]byte(s)) }

// maskLabel is what a masked marker, phrase or URL becomes; invisible
// characters and terminal escapes are deleted instead.
func maskLabel(s Signal) []byte {
	if s == SignalInvisibleUnicode || s == SignalANSIEscapes {
		return nil
	}
	return []byte("[removed by toolguard: " + s.String() + "]")
}

// scanned is what scanValue found in one JSON value.
type scanned struct {
	found uint8  // signals found (bit per Signal)
	block Signal // the first signal whose action is block; numSignals = none
	edits []edit // masks, as replacements of whole string literals
}

// scanValue looks for signals in every string value of the JSON value at
// b[i] with sc, and returns what it found and the value's end.
func (g *Guard) scanValue(sc *scanner, b []byte, i int) (scanned, int, error) {
	out := scanned{block: numSignals}
	end, err := rawjson.Walk(b, i, func(s, e int, esc bool) error {
		text := b[s:e]
		if esc {
			text = rawjson.AppendUnquoted(g.text[:0], text)
			g.text = text[:0] // keep the grown scratch buffer
		}
		g.findings = sc.scan(text, g.findings[:0])
		if len(g.findings) == 0 {
			return nil
		}
		var masked []byte
		at := 0
		for _, f := range g.findings {
			out.found |= 1 << f.sig
			switch sc.acts[f.sig] {
			case ActionBlock:
				if out.block == numSignals {
					out.block = f.sig
				}
			case ActionMask:
				if masked == nil {
					masked = make([]byte, 0, len(text))
				}
				masked = append(masked, text[at:f.s]...)
				masked = append(masked, maskLabel(f.sig)...)
				at = f.e
			}
		}
		if masked != nil {
			masked = append(masked, text[at:]...)
			out.edits = append(out.edits, edit{s: s - 1, e: e + 1, repl: rawjson.AppendStringBytes(nil, masked)})
		}
		return nil
	})
	return out, end, err
}

// signalList names the signals in bits, for log lines.
func signalList(bits uint8) string {
	var b bytes.Buffer
	for s := range numSignals {
		if bits&(1<<s) != 0 {
			if b.Len() > 0 {
				b.WriteByte(',')
			}
			b.WriteString(s.String())
		}
	}
	return b.String()
}

// malformed fails closed on a result toolguard cannot read: passing it on
// unchecked would let a server slip a poisoned definition past the filter.
func (g *Guard) malformed(what string) sdk.Result {
	sdk.Warnf("toolguard: cannot read the %s result: blocked", what)
	return sdk.RejectData(0, g.denyCode, "toolguard: the server's "+what+" result is malformed", []byte(`{"reason":"malformed_result"}`))
}

// onToolsList filters a tools/list result.
func (g *Guard) onToolsList(m *sdk.Message) sdk.Result {
	b := m.Body
	res, err := rawjson.Member(b, 0, "result")
	if err != nil {
		return g.malformed("tools/list")
	}
	if !res.Found() || b[res.Start] != '{' {
		return sdk.Continue() // an error response
	}
	tools, err := rawjson.Member(b, res.Start, "tools")
	if err != nil || !tools.Found() || b[tools.Start] != '[' {
		return g.malformed("tools/list")
	}
	arr, changed, err := g.filterTools(m, b, tools)
	if err != nil {
		return g.malformed("tools/list")
	}
	if !changed {
		return sdk.Continue()
	}
	return sdk.Replace(applyEdits(b, []edit{{s: tools.Start, e: tools.End, repl: arr}}))
}

// filterTools checks every tool of the array b[arr.Start:arr.End], updates the
// store, and returns the array as the client may see it and whether it
// differs.
func (g *Guard) filterTools(m *sdk.Message, b []byte, arr rawjson.Span) ([]byte, bool, error) {
	s := scopeOf(m)
	state := g.needState()
	var gen uint32
	if state {
		gen = getU32(s.key(kindGen, ""))
	}
	out := []byte{'['}
	changed := false
	n := 0
	seen := map[string]bool{}
	_, err := rawjson.Elements(b, arr.Start, func(vs int) (int, error) {
		ve, err := rawjson.Skip(b, vs)
		if err != nil {
			return 0, err
		}
		el, keep, err := g.checkTool(m, s, gen, state, b, vs, ve, &n, seen)
		if err != nil {
			return 0, err
		}
		if !keep || len(el) != ve-vs {
			changed = true
		} else if !bytes.Equal(el, b[vs:ve]) {
			changed = true
		}
		if keep {
			if len(out) > 1 {
				out = append(out, ',')
			}
			out = append(out, el...)
		}
		return ve, nil
	})
	if err != nil {
		return nil, false, err
	}
	return append(out, ']'), changed, nil
}

// checkTool checks one listed tool b[vs:ve]: it returns the tool as the
// client may see it (masked or not) and whether it stays in the list.
func (g *Guard) checkTool(m *sdk.Message, s scope, gen uint32, state bool, b []byte, vs, ve int, n *int, seen map[string]bool) ([]byte, bool, error) {
	el := b[vs:ve]
	if el[0] != '{' {
		sdk.Warnf("toolguard: tools/list on %s: an entry that is not an object: removed", s)
		return nil, false, nil
	}
	var vals [1]rawjson.Span
	if _, err := rawjson.Lookup(b, vs, []string{"name"}, vals[:]); err != nil {
		return nil, false, err
	}
	if !vals[0].Found() || b[vals[0].Start] != '"' {
		sdk.Warnf("toolguard: tools/list on %s: a tool without a string name: removed", s)
		return nil, false, nil
	}
	name := string(rawjson.AppendUnquoted(nil, b[vals[0].Start+1:vals[0].End-1]))
	if *n++; *n > maxToolsPerList {
		if *n == maxToolsPerList+1 {
			sdk.Warnf("toolguard: tools/list on %s: more than %d tools in one page: the rest removed", s, maxToolsPerList)
		}
		return nil, false, nil
	}
	if seen[name] {
		sdk.Warnf("toolguard: tools/list on %s: tool %s listed twice: the second removed", s, quoteName(name))
		return nil, false, nil
	}
	seen[name] = true

	sig, _, err := g.scanValue(&g.descScan, b, vs)
	if err != nil {
		return nil, false, err
	}
	keep := true
	if state {
		why, err := g.observe(s, gen, name, b, vs, sig.found)
		if err != nil {
			return nil, false, err
		}
		if why != "" {
			if g.pinMode == PinsShadow {
				sdk.Warnf("toolguard: shadow: tool %s on %s would be removed: %s", quoteName(name), s, reasonText[why])
			} else {
				sdk.Warnf("toolguard: tool %s on %s removed: %s", quoteName(name), s, reasonText[why])
				keep = false
			}
		}
	}
	if sig.found != 0 {
		act := "recorded"
		switch {
		case sig.block != numSignals:
			act, keep = "removed", false
		case len(sig.edits) > 0:
			act = "masked"
		}
		sdk.Warnf("toolguard: tool %s on %s: its definition carries %s: %s", quoteName(name), s, signalList(sig.found), act)
	}
	if d := g.decide(m.Caller, m.Tunnel, m.Channel, name); d.deny {
		keep = false
	}
	if !keep {
		return nil, false, nil
	}
	if len(sig.edits) == 0 {
		return el, true, nil
	}
	for k := range sig.edits {
		sig.edits[k].s -= vs
		sig.edits[k].e -= vs
	}
	return applyEdits(el, sig.edits), true, nil
}

// observe records a listed tool's definition in the store (learning its
// pin on first sight when configured) and returns why the tool must not
// be offered ("" = it may).
func (g *Guard) observe(s scope, gen uint32, name string, b []byte, vs int, found uint8) (string, error) {
	r := record{gen: gen, found: found}
	if err := hashTool(b, vs, g.hashBuf, &r.hash); err != nil {
		return "", err
	}
	rk := s.key(kindRecord, name)
	old, had := sdk.KVGet(rk)
	if !had {
		ck := s.key(kindCount, "")
		c := getU32(ck)
		if c >= maxToolsPerScope {
			return reasonNotPinned, nil
		}
		setU32(ck, c+1)
	}
	if _, pinned := g.configPin(s, name); !pinned && g.pinMode != PinsOff {
		lk := s.key(kindLearned, name)
		if lp, ok := sdk.KVGet(lk); ok && len(lp) == 32 {
			r.learned = true
			r.learnMatch = [32]byte(lp) == r.hash
		} else if g.learn {
			sdk.KVSet(lk, r.hash[:])
			r.learned, r.learnMatch = true, true
			sdk.Infof("toolguard: tool %s on %s pinned on first sight", quoteName(name), s)
		}
	}
	if enc := r.encode(); !bytes.Equal(enc, old) {
		sdk.KVSet(rk, enc)
	}
	if g.pinMode == PinsOff {
		return "", nil
	}
	return g.pinVerdict(s, name, r, gen), nil
}

// onToolsCall scans a tools/call result, in one pass over the message.
func (g *Guard) onToolsCall(m *sdk.Message) sdk.Result {
	b := m.Body
	var sig scanned
	seen := false
	err := visitMember(b, "result", func(vs int) (int, error) {
		var end int
		var err error
		sig, end, err = g.scanValue(&g.resScan, b, vs)
		seen = true
		return end, err
	})
	if err != nil {
		return g.malformed("tools/call")
	}
	if !seen || sig.found == 0 {
		return sdk.Continue()
	}
	s := scopeOf(m)
	if sig.block != numSignals {
		sdk.Warnf("toolguard: tools/call result of %s on %s carries %s: blocked", quoteName(m.Tool), s, signalList(sig.found))
		data := sdk.AppendJSONString([]byte(`{"reason":"`+reasonPoisonedResult+`","signal":`), sig.block.String())
		return sdk.RejectData(0, g.denyCode, "tool result blocked by toolguard: it carries "+sig.block.String(), append(data, '}'))
	}
	if len(sig.edits) == 0 {
		sdk.Warnf("toolguard: tools/call result of %s on %s carries %s: recorded", quoteName(m.Tool), s, signalList(sig.found))
		return sdk.Continue()
	}
	sdk.Warnf("toolguard: tools/call result of %s on %s carries %s: masked", quoteName(m.Tool), s, signalList(sig.found))
	return sdk.Replace(applyEdits(b, sig.edits))
}

// onServerInfo handles the results that describe the server
// (initialize, server/discover): its instructions are checked like a
// tool's description (block empties them), and a tools array, where a
// server includes one, is filtered like a tools/list result.
func (g *Guard) onServerInfo(m *sdk.Message) sdk.Result {
	b := m.Body
	res, err := rawjson.Member(b, 0, "result")
	if err != nil {
		return g.malformed(m.Method)
	}
	if !res.Found() || b[res.Start] != '{' {
		return sdk.Continue()
	}
	var vals [2]rawjson.Span
	if _, err := rawjson.Lookup(b, res.Start, []string{"instructions", "tools"}, vals[:]); err != nil {
		return g.malformed(m.Method)
	}
	var edits []edit
	if in := vals[0]; in.Found() && b[in.Start] == '"' {
		sig, _, err := g.scanValue(&g.descScan, b, in.Start)
		if err != nil {
			return g.malformed(m.Method)
		}
		if sig.found != 0 {
			act := "recorded"
			switch {
			case sig.block != numSignals:
				act = "removed"
				edits = append(edits, edit{s: in.Start, e: in.End, repl: []byte(`""`)})
			case len(sig.edits) > 0:
				act = "masked"
				edits = append(edits, sig.edits...)
			}
			sdk.Warnf("toolguard: %s: the server's instructions carry %s: %s", m.Method, signalList(sig.found), act)
		}
	}
	if t := vals[1]; t.Found() && b[t.Start] == '[' {
		arr, changed, err := g.filterTools(m, b, t)
		if err != nil {
			return g.malformed(m.Method)
		}
		if changed {
			edits = append(edits, edit{s: t.Start, e: t.End, repl: arr})
		}
	}
	if len(edits) == 0 {
		return sdk.Continue()
	}
	slices.SortFunc(edits, func(a, b edit) int { return a.s - b.s })
	return sdk.Replace(applyEdits(b, edits))
}

// listChanged is the method of the notification that tells a client the
// server's tools changed.
const listChanged = "notifications/tools/list_changed"

// onNotification handles a server notification in any response stream:
// tools/list_changed makes every tool of its tunnel and channel count as
// changed until a tools/list shows its definition again.
func (g *Guard) onNotification(m *sdk.Message) {
	if !bytes.Contains(m.Body, []byte("list_changed")) || g.pinMode == PinsOff {
		return
	}
	meth, err := rawjson.Member(m.Body, 0, "method")
	if err != nil || !meth.Found() || m.Body[meth.Start] != '"' || string(rawjson.AppendUnquoted(nil, m.Body[meth.Start+1:meth.End-1])) != listChanged {
		return
	}
	s := scopeOf(m)
	k := s.key(kindGen, "")
	setU32(k, getU32(k)+1)
	sdk.Infof("toolguard: %s on %s: tool definitions unverified until the tools are listed again", listChanged, s)
}
