package toolguard

import (
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strconv"
	"unsafe"

	"github.com/sluicemcp/sluice/sdk"
)

// Limits that keep one server from filling the plugin's store (which all
// tunnels of a relay share).
const (
	// maxToolsPerList: tools past this many in one tools/list page are
	// removed.
	maxToolsPerList = 2048
	// maxToolsPerScope: distinct tool names toolguard keeps state for per
	// tunnel and channel; tools past it are treated as changed.
	maxToolsPerScope = 8192
	// maxDecisions bounds an instance's cache of policy decisions.
	maxDecisions = 4096
)

// Guard applies one Config. It keeps caches and scratch buffers, so it is
// not safe for concurrent use (a Wasm instance handles one call at a
// time); its state across calls lives in the plugin's key/value store.
type Guard struct {
	rules       []rule
	defaultDeny bool
	denyCode    int

	pinMode       string
	learn         bool
	unlistedBlock bool
	sets          []pinSet

	desc, res         [numSignals]Action
	descScan, resScan scanner
	descBlock         uint8 // signals whose description action is block

	decisions map[string]decision
	key       []byte
	findings  []finding
	text      []byte
	hashBuf   []byte
}

type rule struct {
	name                              string
	deny                              bool
	tools, callers, tunnels, channels globs
}

type pinSet struct {
	tunnels, channels globs
	pins              map[string][32]byte
}

type decision struct {
	deny bool
	rule string
}

// New validates cfg and returns its Guard.
func New(cfg Config) (*Guard, error) {
	g := &Guard{denyCode: cfg.DenyCode, decisions: map[string]decision{}}
	if g.denyCode == 0 {
		g.denyCode = -32001
	}
	switch cfg.Default {
	case "", "allow":
	case "deny":
		g.defaultDeny = true
	default:
		return nil, fmt.Errorf("toolguard: config default: %q: want allow or deny", cfg.Default)
	}
	for i, r := range cfg.Policy {
		key := fmt.Sprintf("policy[%d]", i)
		if r.Name == "" {
			return nil, fmt.Errorf("toolguard: config %s.name: empty: a rule needs a name (denied calls name it)", key)
		}
		cr := rule{name: r.Name}
		switch r.Action {
		case "allow":
		case "deny":
			cr.deny = true
		default:
			return nil, fmt.Errorf("toolguard: config %s.action: %q: want allow or deny", key, r.Action)
		}
		if len(r.Tools) == 0 {
			return nil, fmt.Errorf("toolguard: config %s.tools: empty: list the tools the rule covers (\"*\" for all)", key)
		}
		var err error
		if cr.tools, err = compileGlobs("toolguard: config "+key+".tools", r.Tools, false); err != nil {
			return nil, err
		}
		if cr.callers, err = compileGlobs("toolguard: config "+key+".callers", r.Callers, true); err != nil {
			return nil, err
		}
		if cr.tunnels, err = compileGlobs("toolguard: config "+key+".tunnels", r.Tunnels, false); err != nil {
			return nil, err
		}
		if cr.channels, err = compileGlobs("toolguard: config "+key+".channels", r.Channels, false); err != nil {
			return nil, err
		}
		g.rules = append(g.rules, cr)
	}

	p := cfg.Pins
	switch p.Mode {
	case "":
		g.pinMode = PinsEnforce
	case PinsEnforce, PinsShadow, PinsOff:
		g.pinMode = p.Mode
	default:
		return nil, fmt.Errorf("toolguard: config pins.mode: %q: want enforce, shadow or off", p.Mode)
	}
	g.learn = p.Learn == nil || *p.Learn
	switch p.Unlisted {
	case "", "allow":
	case "block":
		g.unlistedBlock = true
	default:
		return nil, fmt.Errorf("toolguard: config pins.unlisted: %q: want allow or block", p.Unlisted)
	}
	for i, s := range p.Sets {
		key := fmt.Sprintf("toolguard: config pins.sets[%d]", i)
		ps := pinSet{pins: map[string][32]byte{}}
		if s.From != "" {
			f, err := ParsePins([]byte(s.From))
			if err != nil {
				return nil, fmt.Errorf("%s.from: %w", key, err)
			}
			for name, h := range f.Tools {
				ps.pins[name] = rawPin(h)
			}
		}
		for name, h := range s.Tools {
			if err := checkPin(h); err != nil {
				return nil, fmt.Errorf("%s.tools.%s: %w", key, name, err)
			}
			ps.pins[name] = rawPin(h)
		}
		if s.From == "" && len(s.Tools) == 0 {
			return nil, fmt.Errorf("%s: give from (a pins document) or tools", key)
		}
		var err error
		if ps.tunnels, err = compileGlobs(key+".tunnels", s.Tunnels, false); err != nil {
			return nil, err
		}
		if ps.channels, err = compileGlobs(key+".channels", s.Channels, false); err != nil {
			return nil, err
		}
		g.sets = append(g.sets, ps)
	}

	var err error
	if g.desc, err = compileActions("signals.descriptions", DefaultDescriptionActions, cfg.Signals.Descriptions); err != nil {
		return nil, err
	}
	if g.res, err = compileActions("signals.results", DefaultResultActions, cfg.Signals.Results); err != nil {
		return nil, err
	}
	var hosts []hostPattern
	for i, h := range cfg.Signals.AllowedHosts {
		hp, err := compileHost(fmt.Sprintf("toolguard: config signals.allowed_hosts[%d]", i), h)
		if err != nil {
			return nil, err
		}
		hosts = append(hosts, hp)
	}
	g.descScan = scanner{acts: &g.desc, hosts: hosts}
	g.resScan = scanner{acts: &g.res, hosts: hosts}
	for s := range numSignals {
		if g.desc[s] == ActionBlock && (s != SignalUntrustedURLs || len(hosts) > 0) {
			g.descBlock |= 1 << s
		}
	}
	return g, nil
}

// decide applies the policy to a call of tool by caller on tunnel/channel.
func (g *Guard) decide(caller, tunnel, channel, tool string) decision {
	k := append(g.key[:0], caller...)
	k = append(k, 0)
	k = append(k, tunnel...)
	k = append(k, 0)
	k = append(k, channel...)
	k = append(k, 0)
	k = append(k, tool...)
	g.key = k
	if d, ok := g.decisions[string(k)]; ok {
		return d
	}
	d := decision{deny: g.defaultDeny, rule: "default"}
	for i := range g.rules {
		r := &g.rules[i]
		if r.tools.match(tool) && r.callers.match(caller) && r.tunnels.match(tunnel) && r.channels.match(channel) {
			d = decision{deny: r.deny, rule: r.name}
			break
		}
	}
	if len(g.decisions) >= maxDecisions {
		clear(g.decisions)
	}
	g.decisions[string(k)] = d
	return d
}

// needState reports whether tools/call checks need the listing state.
func (g *Guard) needState() bool {
	return g.pinMode != PinsOff || g.descBlock != 0 || g.unlistedBlock
}

// configPin returns the operator's pin of tool on scope, if any.
func (g *Guard) configPin(s scope, tool string) ([32]byte, bool) {
	for i := range g.sets {
		ps := &g.sets[i]
		if !ps.tunnels.match(s.tunnel) || !ps.channels.match(s.channel) {
			continue
		}
		if p, ok := ps.pins[tool]; ok {
			return p, true
		}
	}
	return [32]byte{}, false
}

// scope is where a tool's state lives: the side of the tunnel (the relay
// and the agent of `sluice dev` share one store), the tunnel and the
// channel.
type scope struct{ side, tunnel, channel string }

func scopeOf(m *sdk.Message) scope {
	return scope{side: m.Side.String(), tunnel: m.Tunnel, channel: m.Channel}
}

func (s scope) String() string {
	return "tunnel " + strconv.Quote(s.tunnel) + " channel " + strconv.Quote(s.channel)
}

// Store keys: "tg<kind>\x00side\x00tunnel\x00channel[\x00tool]", built in
// one allocation (this runs twice per tools/call).
func (s scope) key(kind byte, tool string) string {
	hashed := len(tool) > 256 // keys are bounded by the host (1 KiB)
	n := 3 + 3 + len(s.side) + len(s.tunnel) + len(s.channel)
	withTool := kind == kindRecord || kind == kindLearned
	if withTool {
		n += 1 + min(len(tool), 33)
		if !hashed {
			n += len(tool)
		}
	}
	b := make([]byte, 0, n)
	b = append(b, 't', 'g', kind, 0)
	b = append(b, s.side...)
	b = append(b, 0)
	b = append(b, s.tunnel...)
	b = append(b, 0)
	b = append(b, s.channel...)
	if withTool {
		b = append(b, 0)
		if hashed {
			h := sumString(tool)
			b = append(b, '#')
			b = hex.AppendEncode(b, h[:16])
		} else {
			b = append(b, tool...)
		}
	}
	return unsafe.String(unsafe.SliceData(b), len(b)) // b is not used again
}

// Kinds of store keys.
const (
	kindRecord  = 'c' // the tool's last listed definition
	kindLearned = 'p' // a pin learned on first sight
	kindGen     = 'g' // the scope's generation: bumped by tools/list_changed
	kindCount   = 'n' // distinct tools with state in the scope
)

func getU32(key string) uint32 {
	v, ok := sdk.KVGet(key)
	if !ok || len(v) != 4 {
		return 0
	}
	return binary.LittleEndian.Uint32(v)
}

func setU32(key string, n uint32) {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], n)
	sdk.KVSet(key, b[:])
}

// record is what toolguard keeps of a tool's last listed definition.
type record struct {
	gen        uint32   // the scope's generation when it was listed
	learned    bool     // a learned pin exists
	learnMatch bool     // … and equals hash
	found      uint8    // signals in the definition (bit per Signal)
	hash       [32]byte // the definition's pin
}

const recordLen = 40

func (r record) encode() []byte {
	b := make([]byte, recordLen)
	b[0] = 1
	if r.learned {
		b[1] |= 1
	}
	if r.learnMatch {
		b[1] |= 2
	}
	b[2] = r.found
	binary.LittleEndian.PutUint32(b[4:], r.gen)
	copy(b[8:], r.hash[:])
	return b
}

func decodeRecord(b []byte) (record, bool) {
	if len(b) != recordLen || b[0] != 1 {
		return record{}, false
	}
	r := record{learned: b[1]&1 != 0, learnMatch: b[1]&2 != 0, found: b[2], gen: binary.LittleEndian.Uint32(b[4:])}
	copy(r.hash[:], b[8:])
	return r, true
}

// Reasons a tool call is blocked, in the error's data.
const (
	reasonDefinitionChanged   = "definition_changed"
	reasonNotPinned           = "not_pinned"
	reasonToolListChanged     = "tool_list_changed"
	reasonNotListed           = "not_listed"
	reasonPoisonedDescription = "poisoned_description"
	reasonPoisonedResult      = "poisoned_result"
)

var reasonText = map[string]string{
	reasonDefinitionChanged:   "the tool's definition changed since it was pinned",
	reasonNotPinned:           "the tool is not pinned",
	reasonToolListChanged:     "the server's tool list changed: list the tools again",
	reasonNotListed:           "the tool has not been listed",
	reasonPoisonedDescription: "the tool's definition carries a poisoning signal",
}

// pinVerdict checks a tool's record against its pin: "" when it is
// current and pinned, else the reason it is not.
func (g *Guard) pinVerdict(s scope, tool string, r record, gen uint32) string {
	if r.gen != gen {
		return reasonToolListChanged
	}
	if p, ok := g.configPin(s, tool); ok {
		if p != r.hash {
			return reasonDefinitionChanged
		}
		return ""
	}
	switch {
	case r.learnMatch:
		return ""
	case r.learned:
		return reasonDefinitionChanged
	}
	return reasonNotPinned
}

// checkCall decides a tools/call request.
func (g *Guard) checkCall(m *sdk.Message) sdk.Result {
	if d := g.decide(m.Caller, m.Tunnel, m.Channel, m.Tool); d.deny {
		sdk.Infof("toolguard: tools/call denied by policy %q", d.rule)
		data := sdk.AppendJSONString([]byte(`{"policy":`), d.rule)
		return sdk.RejectData(0, g.denyCode, "tool call denied by policy "+strconv.Quote(d.rule), append(data, '}'))
	}
	if !g.needState() {
		return sdk.Continue()
	}
	s := scopeOf(m)
	v, ok := sdk.KVGet(s.key(kindRecord, m.Tool))
	r, valid := decodeRecord(v)
	if !ok || !valid {
		if g.unlistedBlock {
			return g.blockCall(m.Tool, reasonNotListed, "")
		}
		return sdk.Continue()
	}
	if bad := r.found & g.descBlock; bad != 0 {
		return g.blockCall(m.Tool, reasonPoisonedDescription, firstSignal(bad).String())
	}
	if g.pinMode == PinsOff {
		return sdk.Continue()
	}
	why := g.pinVerdict(s, m.Tool, r, getU32(s.key(kindGen, "")))
	if why == "" {
		return sdk.Continue()
	}
	if g.pinMode == PinsShadow {
		sdk.Warnf("toolguard: shadow: tools/call of %s on %s would be blocked: %s", quoteName(m.Tool), s, reasonText[why])
		return sdk.Continue()
	}
	return g.blockCall(m.Tool, why, "")
}

func (g *Guard) blockCall(tool, reason, signal string) sdk.Result {
	text := reasonText[reason]
	data := sdk.AppendJSONString([]byte(`{"reason":`), reason)
	if signal != "" {
		text += " (" + signal + ")"
		data = sdk.AppendJSONString(append(data, `,"signal":`...), signal)
	}
	sdk.Warnf("toolguard: tools/call of %s blocked: %s", quoteName(tool), text)
	return sdk.RejectData(0, g.denyCode, "tool call blocked by toolguard: "+text, append(data, '}'))
}

func firstSignal(bits uint8) Signal {
	for s := range numSignals {
		if bits&(1<<s) != 0 {
			return s
		}
	}
	return numSignals
}

// quoteName quotes a server-supplied name for a log line, bounded.
func quoteName(s string) string {
	if len(s) > 64 {
		s = s[:64] + "…"
	}
	return strconv.Quote(s)
}
