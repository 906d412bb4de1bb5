package relay

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/sluicemcp/sluice/engine/wire"
)

// Process affinity (X-Tunnel-MCP-Server-Info, proc_affinity): a channel an
// agent declares with proc_affinity keeps its MCP sessions in one process
// (a stdio server), so every command of such a session must reach the agent
// instance whose server created it. The relay pins a session to that
// instance when the final response that carries its new Mcp-Session-Id
// comes back from a command that instance took on such a channel, and
// queues the session's later commands for that instance alone: in its own
// channel (alone) or lane (in a Cluster, with the pin in the Cluster's
// shared store, since any replica may get the session's next call).

// maxPins bounds a tunnel's table of pinned sessions (a cache, in a Cluster).
const maxPins = 100_000

// pinTimeout bounds reading or writing a pin in the Cluster's store.
const pinTimeout = 2 * time.Second

// serverInfo is the part of X-Tunnel-MCP-Server-Info the relay reads.
type serverInfo struct {
	Version  int `json:"version"`
	Channels []struct {
		Name         string `json:"name"`
		ProcAffinity bool   `json:"proc_affinity"`
	} `json:"channels"`
}

// affinityChannels returns the channels a server-info header declares with
// proc_affinity (nil for none, or for a header it cannot read).
func affinityChannels(header string) map[string]bool {
	if header == "" || len(header) > 4096 {
		return nil
	}
	var si serverInfo
	if json.Unmarshal([]byte(header), &si) != nil || si.Version != 1 {
		return nil
	}
	var out map[string]bool
	for _, c := range si.Channels {
		if c.ProcAffinity {
			if out == nil {
				out = map[string]bool{}
			}
			out[c.Name] = true
		}
	}
	return out
}

// pollAffinity is what a poll declares: the channels with proc_affinity of
// its agent.
func pollAffinity(req *http.Request) map[string]bool {
	return affinityChannels(req.Header.Get(wire.HeaderServerInfo))
}

// commandChannel is a command's channel ("" is main).
func commandChannel(c *wire.Command) string {
	if c.Channel == "" {
		return wire.DefaultChannel
	}
	return c.Channel
}

// InstanceLane is the lane of the commands pinned to one agent instance.
func InstanceLane(instance string) Lane {
	sum := sha256.Sum256([]byte(instance))
	return Lane("i" + hex.EncodeToString(sum[:8]))
}

// sessionOf returns a command's Mcp-Session-Id ("" for none).
func sessionOf(c *wire.Command) string {
	if vs := c.Headers["Mcp-Session-Id"]; len(vs) > 0 {
		return vs[0]
	}
	return ""
}

// respSession returns the Mcp-Session-Id of an agent's response headers.
func respSession(h map[string][]string) string {
	for k, vs := range h {
		if http.CanonicalHeaderKey(k) == "Mcp-Session-Id" && len(vs) > 0 {
			return vs[0]
		}
	}
	return ""
}

// pinTarget returns the agent instance the command p must go to ("" for
// any), from the tunnel's pins (and the Cluster's store on a miss).
func (r *Relay) pinTarget(t *tunnelState, p *pending) string {
	sid := sessionOf(&p.cmd)
	if sid == "" {
		return ""
	}
	inst, known := t.pinned(sid)
	if !known && r.cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), pinTimeout)
		var err error
		inst, err = r.cl.SessionPin(ctx, t.id, sid)
		cancel()
		if err != nil {
			r.log.Warn("session pin unreadable: command not pinned", "tunnel", t.id, "err", err)
			return ""
		}
		t.cachePin(sid, inst)
	}
	if inst != "" && t.isGone(inst) {
		return "" // its process is gone, and the session with it
	}
	return inst
}

// pinned returns the instance a session is pinned to here, and whether
// this replica knows (a relay alone always does).
func (t *tunnelState) pinned(sid string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	inst, ok := t.pins[sid]
	return inst, ok || !t.shared
}

// cachePin records a session's pin ("" : none) in the tunnel's table.
func (t *tunnelState) cachePin(sid, instance string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.pins) >= maxPins {
		t.pins = make(map[string]string)
	}
	t.pins[sid] = instance
}

// isGone reports whether instance was lost.
func (t *tunnelState) isGone(instance string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, gone := t.gone[instance]
	return gone
}

// markGone records a lost instance and drops its pins, returning the
// pending commands that wait for it alone (none will take them).
func (t *tunnelState) markGoneLocked(instance string, now time.Time) []*pending {
	for k, at := range t.gone {
		if now.Sub(at) > time.Hour {
			delete(t.gone, k)
		}
	}
	if len(t.gone) < maxInstances*4 {
		t.gone[instance] = now
	}
	for sid, inst := range t.pins {
		if inst == instance {
			delete(t.pins, sid)
		}
	}
	var stranded []*pending
	for id, p := range t.pending {
		if p.pinnedTo == instance && p.holder == "" {
			stranded = append(stranded, p)
			delete(t.pending, id)
		}
	}
	if q := t.instQueues[instance]; q != nil {
		delete(t.instQueues, instance)
	}
	return stranded
}

// instanceQueue returns the in-process queue of the commands pinned to
// instance, creating it.
func (t *tunnelState) instanceQueue(instance string) chan *pending {
	t.mu.Lock()
	defer t.mu.Unlock()
	q := t.instQueues[instance]
	if q == nil {
		if len(t.instQueues) >= maxInstances {
			for k, c := range t.instQueues {
				if len(c) == 0 {
					delete(t.instQueues, k)
				}
			}
		}
		q = make(chan *pending, t.queueSize)
		t.instQueues[instance] = q
	}
	return q
}

// notePin pins the session a final response created, when the command's
// holder keeps sessions in its process.
func (r *Relay) notePin(t *tunnelState, p *pending, resp *wire.Response) {
	if !p.affinity || sessionOf(&p.cmd) != "" {
		return
	}
	sid := respSession(resp.RespHeaders)
	if sid == "" {
		return
	}
	t.cachePin(sid, p.holder)
	if r.cl != nil {
		ctx, cancel := context.WithTimeout(context.Background(), pinTimeout)
		defer cancel()
		if err := r.cl.PinSession(ctx, t.id, sid, p.holder); err != nil {
			r.log.Warn("session pin not stored: other replicas may send its commands to another agent", "tunnel", t.id, "err", err)
		}
	}
}
