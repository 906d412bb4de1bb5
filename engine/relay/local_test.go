package relay

import (
	"crypto/sha256"
	"testing"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

func doorstepTunnel(size int) *tunnelState {
	t := newTunnelState(&tunnelConf{id: tunA}, size)
	t.shared = true
	return t
}

// lingers offers d and reports whether it went on the doorstep or to a
// poll.
func lingers(ts *tunnelState, d *localItem, now time.Time) bool {
	return ts.offerLocal(d, now) != toQueue
}

func lingering(lane Lane, pinnedTo string) *localItem {
	p := newPending("r1", wire.CommandJSONRPC, "main", nil, []byte(`{}`), time.Minute, time.Now())
	p.lane, p.pinnedTo = lane, pinnedTo
	return &localItem{p: p, lane: lane, pinnedTo: pinnedTo}
}

// A command waits on the doorstep only while a poll of this replica is held
// or ended a moment ago, and the doorstep holds no more than the queue's
// bound.
func TestDoorstepNeedsAPollAndHoldsTheBound(t *testing.T) {
	now := time.Now()
	ts := doorstepTunnel(2)
	if lingers(ts, lingering(LaneCommands, ""), now) {
		t.Fatal("lingered with no poll ever seen here")
	}
	ts.lastPoll = now.Add(-lingerAfterPoll - time.Millisecond)
	if lingers(ts, lingering(LaneCommands, ""), now) {
		t.Fatal("lingered long after the last poll here")
	}
	ts.lastPoll = now.Add(-time.Millisecond)
	if !lingers(ts, lingering(LaneCommands, ""), now) || !lingers(ts, lingering(LaneCommands, ""), now) {
		t.Fatal("did not linger right after a poll")
	}
	if lingers(ts, lingering(LaneCommands, ""), now) {
		t.Fatal("the doorstep went past the queue's bound")
	}
	ts.lastPoll = time.Time{}
	ts.outstanding = 1 // a poll held now
	ts.doorstep = nil
	if !lingers(ts, lingering(LaneCommands, ""), now) {
		t.Fatal("did not linger while a poll is held")
	}
	// get_stream commands wait only for polls that offered GET streams;
	// pinned ones only for their instance.
	if lingers(ts, lingering(LaneStreams, ""), now) {
		t.Fatal("a get_stream command lingered with no offering poll")
	}
	if lingers(ts, lingering(InstanceLane("inst-a"), "inst-a"), now) {
		t.Fatal("a pinned command lingered for an instance never seen here")
	}
	ts.agentRequest("inst-a", 1, now)
	if !lingers(ts, lingering(InstanceLane("inst-a"), "inst-a"), now) {
		t.Fatal("a pinned command did not linger for its instance polling here")
	}
}

// A waiting poll gets the first command it takes (and only such a
// command wakes it); a poll takes off the doorstep what its kind takes,
// oldest first, up to its limit.
func TestDoorstepTakesByKind(t *testing.T) {
	now := time.Now()
	ts := doorstepTunnel(16)
	woken := map[string]int{}
	plain := &localWaiter{instance: "inst-b", wake: func() { woken["plain"]++ }}
	pinnedA := &localWaiter{instance: "inst-a", pinned: true, wake: func() { woken["pinned"]++ }}
	ts.addWaiter(plain)
	ts.addWaiter(pinnedA)
	ts.outstanding, ts.offering = 2, 1 // polls held here
	stream := lingering(LaneStreams, "")
	if ts.offerLocal(stream, now) != toDoorstep || len(woken) != 0 {
		t.Fatalf("a get_stream command woke %v", woken)
	}
	forA := lingering(InstanceLane("inst-a"), "inst-a")
	if ts.offerLocal(forA, now) != toPoll || woken["pinned"] != 1 || woken["plain"] != 0 {
		t.Fatalf("a command pinned to inst-a woke %v", woken)
	}
	c1, c2, c3 := lingering(LaneCommands, ""), lingering(LaneCommands, ""), lingering(LaneCommands, "")
	if ts.offerLocal(c1, now) != toPoll || woken["plain"] != 1 {
		t.Fatalf("a command woke %v", woken)
	}
	// The woken polls left the waiters: the next commands wait for them.
	if ts.offerLocal(c2, now) != toDoorstep || ts.offerLocal(c3, now) != toDoorstep || woken["plain"] != 1 {
		t.Fatalf("commands woke %v", woken)
	}
	if got := ts.removeWaiter(pinnedA); got != forA {
		t.Fatal("inst-a's poll did not get its pinned command")
	}
	if got := ts.removeWaiter(plain); got != c1 {
		t.Fatal("the plain poll did not get the command that woke it")
	}
	if got := ts.takeLocal(plain, 1); len(got) != 1 || got[0] != c2 {
		t.Fatal("the plain poll did not take the oldest command")
	}
	if got := ts.takeLocal(pinnedA, 10); len(got) != 1 || got[0] != c3 {
		t.Fatalf("inst-a's poll took %d, want the last command alone (not the get_stream one)", len(got))
	}
	for _, d := range []*localItem{c2, c3} {
		select {
		case <-d.off:
		default:
			t.Fatal("a taken command's lingering caller was not told")
		}
	}
	if !ts.linger(c2) || ts.linger(stream) {
		t.Fatal("linger: a taken command still there, or the untaken one gone")
	}
}

// A claim made with a key revoked since its poll began is refused: the
// agent could not post the result.
func TestClaimRefusesARevokedKey(t *testing.T) {
	ts := doorstepTunnel(4)
	ts.conf.Store(&tunnelConf{id: tunA, runtimeKeys: []hashedKey{{name: "runtime", sum: sha256.Sum256([]byte("rk-new"))}}})
	p := newPending("", wire.CommandJSONRPC, "main", nil, []byte(`{}`), time.Minute, time.Now())
	ts.register(p)
	old := taker{instance: "inst", key: sha256.Sum256([]byte("rk-old")), keyed: true}
	if ts.claim(p.cmd.RequestID, old) != nil {
		t.Fatal("a claim with a revoked key took the command")
	}
	valid := taker{instance: "inst", key: sha256.Sum256([]byte("rk-new")), keyed: true}
	if ts.claim(p.cmd.RequestID, valid) != p {
		t.Fatal("a claim with a valid key was refused")
	}
}

// TestRemoteWordAboutARevokedKeyIsNotBelieved: another replica's word that
// it has polls made with a key, heard after that key's revocation reached
// this replica (the word was said before it reached that one), must not
// count an agent connected: calls would wait for it instead of getting 503.
// (The fault suite's TestRuntimeKeyRevokedOnReplicas hung 12 calls for 30 s
// on such a word once.)
func TestRemoteWordAboutARevokedKeyIsNotBelieved(t *testing.T) {
	kept, revoked := sha256.Sum256([]byte("kept")), sha256.Sum256([]byte("revoked"))
	ts := newTunnelState(&tunnelConf{id: tunA, runtimeKeys: []hashedKey{{sum: kept}}}, 8)
	now := time.Now()
	for _, words := range [][]string{{keyFingerprint(revoked)}, {"not-hex-at-all!!"}, {"00112233445566778899"}} {
		ts.remoteLive(now, false, "replica-b", words)
		if ts.connected(now, time.Minute) {
			t.Fatalf("word %q: agent counted connected", words)
		}
		if ts.pollReplica(now) != "" {
			t.Fatalf("word %q: replica-b counted as having polls", words)
		}
	}
	ts.remoteLive(now, false, "replica-b", []string{keyFingerprint(revoked), keyFingerprint(kept)})
	if !ts.connected(now, time.Minute) || ts.pollReplica(now) != "replica-b" {
		t.Fatal("a word about a valid key was not believed")
	}
}
