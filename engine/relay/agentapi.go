package relay

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// agentTunnel checks the tunnel id in the path and the runtime key of an agent
// call, and answers 400, 429 or authFail itself when either is wrong.
func (r *Relay) agentTunnel(w http.ResponseWriter, req *http.Request, authFail int) *tunnelState {
	id := req.PathValue("id")
	if !wire.ValidTunnelID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidTunnelIDFormat, "tunnel id must match ^tunnel_[a-z0-9]{32}$")
		return nil
	}
	var t *tunnelState
	if _, ok := r.pass(w, req, gate{surface: realmAgent, realm: id, scope: ScopeRuntime,
		invalid: "runtime key not valid for this tunnel",
		refuse: func(w http.ResponseWriter, msg string) {
			writeAPIError(w, authFail, "invalid_request_error", wire.CodeTunnelUseForbidden, msg)
		}}, func() (res authResult) {
		t, res = r.agentAuth(req, id)
		return res
	}); !ok {
		return nil
	}
	w.Header()[wire.HeaderExtensions] = extensions
	return t
}

// refuseRevoked answers a held poll whose key was revoked meanwhile.
func (r *Relay) refuseRevoked(w http.ResponseWriter, t *tunnelState, req *http.Request) {
	r.met.authFailure(realmAgent, failRevoked)
	msg := "runtime key not valid for this tunnel"
	tok, _ := bearer(req)
	if rk := matchRevoked(sha256.Sum256([]byte(tok)), t.conf.Load().revoked, ScopeRuntime); rk != nil {
		msg = revokedMessage(ScopeRuntime, rk)
	}
	delete(w.Header(), wire.HeaderExtensions)
	writeAPIError(w, http.StatusUnauthorized, "invalid_request_error", wire.CodeTunnelUseForbidden, msg)
}

// extensions is the HeaderExtensions value on every authenticated agent
// answer: one value, as agents read only the first.
var extensions = []string{wire.ExtResponseBatch + ", " + wire.ExtGetStream + ", " + wire.ExtCaller + ", " + wire.ExtOAuthAS}

// handleMetadata serves GET /v1/tunnels/{id}.
func (r *Relay) handleMetadata(w http.ResponseWriter, req *http.Request) {
	// The OpenAPI contract lists 403 for this endpoint.
	t := r.agentTunnel(w, req, http.StatusForbidden)
	if t == nil {
		return
	}
	defer r.agentActive(req, t)()
	c := t.conf.Load()
	writeJSON(w, http.StatusOK, wire.TunnelMetadata{ID: c.id, Name: c.name, Description: c.description})
}

// handlePoll serves GET /v1/tunnels/{id}/poll: it holds the request until a
// command is queued or the wait ends, and hands each command to exactly one
// poller.
func (r *Relay) handlePoll(w http.ResponseWriter, req *http.Request) {
	t := r.agentTunnel(w, req, http.StatusUnauthorized)
	if t == nil {
		return
	}
	if r.closed() || r.isDraining() {
		closingConn(req)
		refuseDraining(w, "poll again (another replica, or this relay once restarted, will answer)")
		return
	}
	limit := 1
	if s := queryValue(req.URL.RawQuery, "limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > wire.MaxPollLimit {
			writeAPIErrorParam(w, http.StatusBadRequest, "limit", "limit must be an integer from 1 to 25")
			return
		}
		limit = n
	}
	wait := r.set.maxPollWait
	if s := queryValue(req.URL.RawQuery, "timeout_ms"); s != "" {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil || n < 1 {
			writeAPIErrorParam(w, http.StatusBadRequest, "timeout_ms", "timeout_ms must be a positive integer")
			return
		}
		if n < int64(wait/time.Millisecond) {
			wait = time.Duration(n) * time.Millisecond
		}
	}
	instance := agentInstance(req)
	watch := t.beginPoll(req, instance, req.Header.Get(wire.HeaderServerInfo))
	defer t.endPoll(watch, instance)
	r.bindAgentConn(req, t, instance)
	r.noteASOffer(req, t)
	t.polls.Add(1)
	// The agent offers GET streams on the polls that may carry them.
	offer := wire.HasExtension(req.Header.Get(wire.HeaderExtensions), wire.ExtGetStream)
	if offer {
		t.offerStart(time.Now())
		defer func() { t.offerEnd(time.Now()) }()
	}

	r.liveNow(t, offer, watch.sum)
	var (
		cmds  []wire.Command
		taken []handout
	)
	aff := pollAffinity(req)
	tk := taker{instance: instance, key: watch.sum, keyed: true}
	if r.cl == nil {
		cmds, taken = r.collect(req, t, watch, limit, wait, tk, offer, aff)
	} else {
		cmds, taken = r.collectShared(req, t, watch, limit, wait, tk, offer, aff)
	}
	if t.isRevoked(watch) {
		// Revoked while the poll was held: say so now, not on the next poll,
		// and put back the commands taken, if any.
		r.refuseRevoked(w, t, req)
		r.putBack(t, taken, instance)
		return
	}
	if req.Context().Err() != nil && len(taken) > 0 {
		// The agent left before its answer was written: it never saw these
		// commands. Put them back for the next poller (they keep their
		// deadline).
		r.putBack(t, taken, instance)
		return
	}
	if len(cmds) == 0 {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	if !offersCaller(req) {
		withholdCallers(cmds)
	}
	buf := wire.AppendPollResponse(make([]byte, 0, 512+len(cmds)*1024), cmds)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(buf))) // no chunking for batches over 2 KiB
	w.WriteHeader(http.StatusOK)
	_, err := w.Write(buf)
	if r.cl != nil && err == nil && http.NewResponseController(w).Flush() == nil {
		// The answer is on its way: the owners of the commands may now wait
		// for their results however long this replica lives (handout.go).
		r.confirmHanded(t, taken, instance)
	}
}

// pollSlack is how much earlier than asked the relay may end an empty
// poll of a second or more: such a poll ends at the last multiple of
// pollSlack (wall clock) before its wait ends. Polls whose waits end within
// the same pollSlack end together, on one wake-up of the relay (and of
// agents that share a machine), instead of one wake-up each: with 10,000
// idle agents re-polling every 30 s, 20 batches a second instead of 333
// wake-ups (RATIONALE.md).
const pollSlack = 50 * time.Millisecond

// slackWait is how long a poll that starts at now and may wait up to wait
// is held when no command comes (pollSlack).
func slackWait(now time.Time, wait time.Duration) time.Duration {
	if wait < time.Second {
		return wait
	}
	return now.Add(wait).Truncate(pollSlack).Sub(now)
}

// queryValue is url.Values.Get of the query string raw for one key,
// without building the whole map: idle agents poll every few seconds
// (url.ParseQuery's rules: pairs split at '&', a pair holding ';' or
// failing to unescape is skipped, the first match wins).
func queryValue(raw, key string) string {
	for raw != "" {
		var pair string
		pair, raw, _ = strings.Cut(raw, "&")
		if pair == "" || strings.Contains(pair, ";") {
			continue
		}
		k, v, _ := strings.Cut(pair, "=")
		k, err := url.QueryUnescape(k)
		if err != nil || k != key {
			continue
		}
		if v, err = url.QueryUnescape(v); err != nil {
			continue
		}
		return v
	}
	return ""
}

// collect waits up to wait for the first live command, then takes whatever
// else is queued, up to limit. Only a poll that offered GET streams takes
// get_stream commands.
func (r *Relay) collect(req *http.Request, t *tunnelState, watch *pollWatch, limit int, wait time.Duration, tk taker, offer bool, aff map[string]bool) ([]wire.Command, []handout) {
	if t.isRevoked(watch) {
		return nil, nil
	}
	timer := time.NewTimer(slackWait(time.Now(), wait))
	defer timer.Stop()
	var (
		got pollTake
		sq  chan *pending // nil (never ready) without the offer
		iq  chan *pending // commands pinned to this instance (nil: none)
	)
	q, s := t.queues()
	made := t.qmade // until the queues exist
	if q != nil {
		made = nil
	}
	if offer {
		sq = s
	}
	if tk.instance != "" && len(aff) > 0 {
		iq = t.instanceQueue(tk.instance)
	}
	for len(got.cmds) == 0 {
		select {
		case <-made:
			q, s = t.queues()
			if offer {
				sq = s
			}
			made = nil
		case p := <-q:
			r.take(&got, t, p, tk, aff)
		case p := <-sq:
			r.take(&got, t, p, tk, aff)
		case p := <-iq:
			r.take(&got, t, p, tk, aff)
		case <-watch.wake:
			if t.wasRevoked(watch) {
				return nil, nil
			}
		case <-timer.C:
			return nil, nil
		case <-req.Context().Done():
			return nil, nil
		case <-t.done:
			return nil, nil
		case <-r.closing:
			return nil, nil
		case <-r.draining:
			return nil, nil
		}
	}
	r.takeQueued(&got, t, q, sq, iq, limit, tk, aff)
	return got.cmds, got.taken
}

// pollTake is what a poll took: the commands to write and their hand-outs.
type pollTake struct {
	cmds  []wire.Command
	taken []handout
}

// take adds p to got when it may still be handed out (hand). It is kept
// out of collect (go:noinline), and so is takeQueued: their frames hold
// copies of a command, and collect's frame stays on the stack of every
// poll held, where the GC scans it and counts it towards the heap goal
// (2 KiB more per held poll when they were inlined, RATIONALE.md).
//
//go:noinline
func (r *Relay) take(got *pollTake, t *tunnelState, p *pending, tk taker, aff map[string]bool) {
	if c, ok := r.hand(t, p, tk, aff); ok {
		got.cmds, got.taken = append(got.cmds, c), append(got.taken, handout{local: p})
	}
}

// takeQueued takes what else is queued, without waiting, up to limit.
//
//go:noinline
func (r *Relay) takeQueued(got *pollTake, t *tunnelState, q, sq, iq chan *pending, limit int, tk taker, aff map[string]bool) {
	for len(got.cmds) < limit {
		select {
		case p := <-q:
			r.take(got, t, p, tk, aff)
		case p := <-sq:
			r.take(got, t, p, tk, aff)
		case p := <-iq:
			r.take(got, t, p, tk, aff)
		default:
			return
		}
	}
}

// hand turns a queued command into its wire form, with response_timeout set
// to the time the relay will still wait, and records tk as its taker.
// Commands whose caller is gone or whose deadline passed are skipped.
func (r *Relay) hand(t *tunnelState, p *pending, tk taker, aff map[string]bool) (wire.Command, bool) {
	if p.isGone() {
		return wire.Command{}, false
	}
	left := time.Until(p.deadline)
	if left <= 0 {
		return wire.Command{}, false
	}
	tk.affinity = aff[commandChannel(&p.cmd)]
	if t.claim(p.cmd.RequestID, tk) != p {
		// Withdrawn (drain) or forgotten since it was queued: never hand it out.
		return wire.Command{}, false
	}
	c := p.cmd
	rt := wire.FormatResponseTimeout(left.Truncate(time.Millisecond))
	c.ResponseTimeout = &rt
	return c, true
}

// agentInstance returns the X-Tunnel-Client-Instance-Id of an agent request
// ("" when absent or unreasonably long: such an agent is not tracked).
func agentInstance(req *http.Request) string {
	inst := req.Header.Get(wire.HeaderClientInstanceID)
	if len(inst) > 128 {
		return ""
	}
	return inst
}

// agentActive records an agent request other than a poll for liveness; call
// the returned function when it ends.
func (r *Relay) agentActive(req *http.Request, t *tunnelState) func() {
	inst := agentInstance(req)
	if inst == "" {
		return func() {}
	}
	r.bindAgentConn(req, t, inst)
	t.agentRequest(inst, 1, time.Now())
	return func() { t.agentRequest(inst, -1, time.Now()) }
}

// agentPost checks an agent's response POST and reads its body up to the
// cap, from the runtime key's byte budget; on a nil tunnel the error answer
// is written.
func (r *Relay) agentPost(w http.ResponseWriter, req *http.Request) (*tunnelState, []byte) {
	t := r.agentTunnel(w, req, http.StatusUnauthorized)
	if t == nil {
		return nil, nil
	}
	// The budget is the runtime key's that authenticated the request.
	tok, _ := bearer(req)
	body, outcome := r.readBody(w, req, r.set.maxResponse, keyID(sha256.Sum256([]byte(tok))))
	if outcome != "" {
		return nil, nil
	}
	return t, body
}

// handleResponse serves POST /v1/tunnels/{id}/response.
func (r *Relay) handleResponse(w http.ResponseWriter, req *http.Request) {
	t, body := r.agentPost(w, req)
	if t == nil {
		return
	}
	defer r.agentActive(req, t)()
	t.singlePosts.Add(1)
	if st, code, msg := r.accept(t, req.Header.Get(wire.HeaderShardToken), body); st != http.StatusOK {
		writeAPIError(w, st, "invalid_request_error", code, msg)
		return
	}
	// The MCP client's handler was just woken with this message: let it write
	// to its client before this goroutine answers the agent (on a busy P it
	// would otherwise wait for our whole reply).
	runtime.Gosched()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(ackOK)
}

// handleResponses serves POST /v1/tunnels/{id}/responses, the response-batch
// extension (wire.BatchPath): each item is taken as a response POST of its
// own would be, and its status is reported in the same place of the answer.
func (r *Relay) handleResponses(w http.ResponseWriter, req *http.Request) {
	t, body := r.agentPost(w, req)
	if t == nil {
		return
	}
	defer r.agentActive(req, t)()
	items, err := wire.DecodeResponseBatch(body)
	if err != nil {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidJSONPayload, err.Error())
		return
	}
	tokens := wire.SplitShardTokens(req.Header.Get(wire.HeaderShardToken))
	if len(tokens) != len(items) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeTunnelRequestMismatch, "X-Tunnel-Shard-Token must hold one token per response, in order")
		return
	}
	t.batchPosts.Add(1)
	t.batched.Add(uint64(len(items)))
	statuses := make([]int, len(items))
	r.acceptBatch(t, tokens, items, statuses)
	runtime.Gosched() // as in handleResponse
	out := wire.AppendBatchStatuses(make([]byte, 0, 16+4*len(statuses)), statuses)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(out)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(out)
}

// accept decodes, checks and delivers one response object; it returns the
// status of the standard endpoint and, for an error, its code and message.
// In a Cluster, a response for a call another replica owns (its shard token
// says which) is checked here and delivered there.
func (r *Relay) accept(t *tunnelState, token string, body []byte) (status int, code, msg string) {
	owner := tokenOwner(token)
	if r.cl == nil || owner == "" || owner == r.replica {
		return r.acceptLocal(t, token, body)
	}
	if _, st, code, msg := decodeResponse(body); st != http.StatusOK {
		return st, code, msg
	}
	var sts [1]int
	r.deliverRemote(t, owner, []deliverItem{{Token: token, Body: body}}, sts[:])
	return sts[0], remoteCode(sts[0]), remoteMessage(sts[0])
}

// acceptBatch is accept for each item of a response batch, with one
// delivery per other replica that owns some of them.
func (r *Relay) acceptBatch(t *tunnelState, tokens []string, items [][]byte, statuses []int) {
	var byOwner map[string][]int
	for i, item := range items {
		owner := tokenOwner(tokens[i])
		if r.cl == nil || owner == "" || owner == r.replica {
			statuses[i], _, _ = r.acceptLocal(t, tokens[i], item)
			continue
		}
		if _, st, _, _ := decodeResponse(item); st != http.StatusOK {
			statuses[i] = st
			continue
		}
		if byOwner == nil {
			byOwner = map[string][]int{}
		}
		byOwner[owner] = append(byOwner[owner], i)
	}
	// The owners at once: one that is gone (its results have nobody to go
	// to) costs the Cluster's grace, which the others need not wait for.
	var wg sync.WaitGroup
	for owner, idx := range byOwner {
		wg.Go(func() {
			batch := make([]deliverItem, len(idx))
			for k, i := range idx {
				batch[k] = deliverItem{Token: tokens[i], Body: items[i]}
			}
			sts := make([]int, len(idx))
			r.deliverRemote(t, owner, batch, sts)
			for k, i := range idx {
				statuses[i] = sts[k] // distinct indexes per owner
			}
		})
	}
	wg.Wait()
}

// deliverRemote delivers items to the replica that owns their calls and
// fills their statuses: 404 when that replica is gone (its clients with
// it: the results have nobody to go to), 503 when it cannot be reached.
func (r *Relay) deliverRemote(t *tunnelState, owner string, items []deliverItem, statuses []int) {
	sts, err := r.callPeerBatch(owner, peerMsg{Op: opDeliver, Tunnel: t.id, Items: items}, len(items))
	for i := range statuses {
		switch {
		case errors.Is(err, ErrNoReplica):
			statuses[i] = http.StatusNotFound
		case err != nil:
			statuses[i] = http.StatusServiceUnavailable
		default:
			statuses[i] = sts[i]
		}
	}
	if err != nil && !errors.Is(err, ErrNoReplica) {
		r.log.Warn("delivery to another replica failed", "tunnel", t.id, "err", err)
	}
}

// remoteCode and remoteMessage describe a remote delivery's status.
func remoteCode(st int) string {
	switch st {
	case http.StatusOK, http.StatusServiceUnavailable:
		return ""
	case http.StatusNotFound:
		return wire.CodePendingRequestNotFound
	case http.StatusUnauthorized:
		return wire.CodeTunnelRequestMismatch
	}
	return wire.CodeInvalidJSONPayload
}

func remoteMessage(st int) string {
	switch st {
	case http.StatusOK:
		return ""
	case http.StatusServiceUnavailable:
		return "could not reach the replica holding the call: retry"
	case http.StatusNotFound:
		return "no pending request with this id"
	case http.StatusUnauthorized:
		return "shard token does not match the request"
	}
	return "response refused"
}

// decodeResponse decodes and checks one response object.
func decodeResponse(body []byte) (resp wire.Response, status int, code, msg string) {
	resp, err := wire.DecodeResponse(body)
	if err != nil || resp.RequestID == "" {
		return resp, http.StatusBadRequest, wire.CodeInvalidJSONPayload, "body must be a response object with a request_id"
	}
	if resp.Channel != "" && !wire.ValidChannel(resp.Channel) {
		return resp, http.StatusBadRequest, wire.CodeInvalidChannelFormat, "channel must match ^[a-z0-9_-]{1,64}$"
	}
	if j := bytes.TrimSpace(resp.RespJSON); len(j) > 0 && !bytes.Equal(j, []byte("null")) && j[0] != '{' {
		return resp, http.StatusBadRequest, wire.CodeInvalidJSONPayload, "resp_json must be an object or null"
	}
	return resp, http.StatusOK, "", ""
}

// acceptLocal decodes, checks and delivers one response object for a call
// this replica owns.
func (r *Relay) acceptLocal(t *tunnelState, token string, body []byte) (status int, code, msg string) {
	resp, st, code, msg := decodeResponse(body)
	if st != http.StatusOK {
		return st, code, msg
	}
	switch t.deliver(token, &resp) {
	case deliverNotFound:
		return http.StatusNotFound, wire.CodePendingRequestNotFound, "no pending request with this id"
	case deliverMismatch:
		r.log.Warn("response with a mismatched shard token", "tunnel", t.id, "request_id", resp.RequestID)
		return http.StatusUnauthorized, wire.CodeTunnelRequestMismatch, "shard token does not match the request"
	}
	return http.StatusOK, "", ""
}

var ackOK = []byte(`{"status":"ok"}`)

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// writeAPIError writes the {"error":{...}} envelope; an empty code is null.
func writeAPIError(w http.ResponseWriter, status int, typ, code, msg string) {
	e := wire.NewAPIError(typ, code, msg)
	if code == "" {
		e.Error.Code = nil
	}
	writeJSON(w, status, e)
}

func writeAPIErrorParam(w http.ResponseWriter, status int, param, msg string) {
	e := wire.NewAPIError("invalid_request_error", "", msg)
	e.Error.Code = nil
	e.Error.Param = &param
	writeJSON(w, status, e)
}
