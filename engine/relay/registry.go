package relay

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sluicemcp/sluice/engine/relay/store"
)

// Record keys in the store: "tunnel.<tunnel id>", "key.<key id>", and
// "meta.bootstrap" once the first admin key was minted.
const (
	recTunnel    = "tunnel."
	recKey       = "key."
	recBootstrap = "meta.bootstrap"
)

// Key prefixes by scope. A key is prefix + 40 base62 characters (about 238
// random bits); the relay keeps only its SHA-256.
const (
	prefixRuntime = "sk_run_"
	prefixClient  = "sk_cli_"
	prefixAdmin   = "sk_adm_"
)

// maxKeysPerOwner bounds the keys of one tunnel (and the admin keys), so an
// authentication compares against a bounded list.
const maxKeysPerOwner = 100

// tunnelDoc is a tunnel as stored.
type tunnelDoc struct {
	ID              string `json:"id"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	AuthMode        string `json:"auth_mode"`
	ResponseTimeout string `json:"response_timeout,omitempty"` // a Go duration; empty: the relay's default
	CreatedAt       int64  `json:"created_at"`
}

// keyDoc is a key as stored: its hash and what describes it, never the key.
type keyDoc struct {
	ID        string `json:"id"`
	Scope     string `json:"scope"`
	TunnelID  string `json:"tunnel_id,omitempty"` // "" for admin keys
	Name      string `json:"name"`
	SHA256    string `json:"sha256"` // hex
	Redacted  string `json:"redacted_value"`
	CreatedAt int64  `json:"created_at"`
	RevokedAt int64  `json:"revoked_at,omitempty"`
}

type storedTunnel struct {
	doc tunnelDoc
	rev uint64
}

type storedKey struct {
	doc keyDoc
	rev uint64
	sum [32]byte
}

// Errors of registry operations the admin API maps to statuses.
var (
	errNoTunnel  = errors.New("no such tunnel")
	errNoKey     = errors.New("no such key")
	errReadOnly  = errors.New("read-only")
	errLastAdmin = errors.New("last admin key")
	errTooMany   = errors.New("too many keys")
)

// registry is the relay's view of its store: the tunnels and keys it
// manages, applied to the relay as they change (from the store's watch,
// and at once for the changes this relay makes).
type registry struct {
	r   *Relay
	st  store.Store
	log *slog.Logger

	mu       sync.Mutex
	tunnels  map[string]*storedTunnel         // by tunnel id
	keys     map[string]*storedKey            // by key id
	byOwner  map[string]map[string]*storedKey // tunnel id ("" = admin) → key id → key
	revs     map[string]uint64                // record key → revision applied
	dead     map[string]uint64                // record key deleted here → watch events up to this revision are stale
	shadowed map[string]bool                  // stored tunnels hidden by a configuration tunnel of the same id (warned once)
}

func newRegistry(r *Relay, st store.Store) *registry {
	return &registry{r: r, st: st, log: r.log,
		tunnels: make(map[string]*storedTunnel), keys: make(map[string]*storedKey),
		byOwner: make(map[string]map[string]*storedKey), revs: make(map[string]uint64),
		dead: make(map[string]uint64), shadowed: make(map[string]bool)}
}

// start loads the store's records and follows its changes until ctx ends.
func (g *registry) start(ctx context.Context) error {
	g.mu.Lock()
	defer g.mu.Unlock()
	recs, err := g.st.Watch(ctx, g.apply)
	if err != nil {
		return fmt.Errorf("relay: store: %w", err)
	}
	touched := map[string]bool{}
	for _, rec := range recs {
		g.applyLocked(store.Change{Record: rec}, touched, false)
	}
	g.refreshLocked(touched)
	return nil
}

// apply takes one change from the store's watch.
func (g *registry) apply(c store.Change) {
	g.mu.Lock()
	defer g.mu.Unlock()
	touched := map[string]bool{}
	g.applyLocked(c, touched, false)
	g.refreshLocked(touched)
}

// applyLocal applies a change this relay just made, before the watch
// reports it: the API's caller sees its own write at once.
func (g *registry) applyLocal(c store.Change) {
	g.mu.Lock()
	defer g.mu.Unlock()
	touched := map[string]bool{}
	g.applyLocked(c, touched, true)
	g.refreshLocked(touched)
}

// applyLocked updates the maps and marks the owners (tunnel ids, "" for
// admin keys) whose configuration must be rebuilt.
func (g *registry) applyLocked(c store.Change, touched map[string]bool, local bool) {
	if d, ok := g.dead[c.Key]; ok && c.Revision != 0 && c.Revision <= d {
		return // a change from before a deletion made here
	}
	if c.Deleted {
		if local {
			g.dead[c.Key] = g.revs[c.Key]
		} else {
			delete(g.dead, c.Key)
		}
		g.removeLocked(c.Key, touched)
		return
	}
	if cur, ok := g.revs[c.Key]; ok && cur >= c.Revision {
		return
	}
	switch {
	case strings.HasPrefix(c.Key, recTunnel):
		var d tunnelDoc
		if err := json.Unmarshal(c.Value, &d); err != nil || recTunnel+d.ID != c.Key || checkTunnelDoc(d) != nil {
			g.log.Warn("store: ignoring a malformed tunnel record", "record", c.Key)
			return
		}
		g.tunnels[d.ID] = &storedTunnel{doc: d, rev: c.Revision}
		touched[d.ID] = true
	case strings.HasPrefix(c.Key, recKey):
		var d keyDoc
		if err := json.Unmarshal(c.Value, &d); err != nil || recKey+d.ID != c.Key {
			g.log.Warn("store: ignoring a malformed key record", "record", c.Key)
			return
		}
		sum, err := hex.DecodeString(d.SHA256)
		if err != nil || len(sum) != sha256.Size || !validScope(d.Scope) || (d.Scope == ScopeAdmin) != (d.TunnelID == "") {
			g.log.Warn("store: ignoring a malformed key record", "record", c.Key)
			return
		}
		if old := g.keys[d.ID]; old != nil && old.doc.TunnelID != d.TunnelID {
			g.removeLocked(c.Key, touched)
		}
		k := &storedKey{doc: d, rev: c.Revision, sum: [32]byte(sum)}
		g.keys[d.ID] = k
		owner := g.byOwner[d.TunnelID]
		if owner == nil {
			owner = make(map[string]*storedKey)
			g.byOwner[d.TunnelID] = owner
		}
		owner[d.ID] = k
		touched[d.TunnelID] = true
	default:
		// meta.* and records of later versions: nothing to apply.
	}
	g.revs[c.Key] = c.Revision
}

func (g *registry) removeLocked(key string, touched map[string]bool) {
	delete(g.revs, key)
	switch {
	case strings.HasPrefix(key, recTunnel):
		id := strings.TrimPrefix(key, recTunnel)
		if _, ok := g.tunnels[id]; ok {
			delete(g.tunnels, id)
			touched[id] = true
		}
	case strings.HasPrefix(key, recKey):
		id := strings.TrimPrefix(key, recKey)
		if k, ok := g.keys[id]; ok {
			delete(g.keys, id)
			delete(g.byOwner[k.doc.TunnelID], id)
			if len(g.byOwner[k.doc.TunnelID]) == 0 {
				delete(g.byOwner, k.doc.TunnelID)
			}
			touched[k.doc.TunnelID] = true
		}
	}
}

// refreshLocked rebuilds what the relay serves for each touched owner.
func (g *registry) refreshLocked(touched map[string]bool) {
	for owner := range touched {
		if owner == "" {
			keys, revoked := g.keysLocked("")
			g.r.setStoreAdmins(keys, revoked)
			continue
		}
		st := g.tunnels[owner]
		if st == nil {
			g.r.dropManaged(owner)
			continue
		}
		c := &tunnelConf{
			id: st.doc.ID, name: st.doc.Name, description: st.doc.Description,
			authMode: st.doc.AuthMode, source: sourceStore, createdAt: st.doc.CreatedAt,
			responseTimeout: g.r.set.responseTimeout,
		}
		if d, err := time.ParseDuration(st.doc.ResponseTimeout); err == nil && d > 0 {
			c.responseTimeout = d
		}
		keys, revoked := g.keysLocked(owner)
		for _, k := range keys {
			switch k.scope {
			case ScopeRuntime:
				c.runtimeKeys = append(c.runtimeKeys, k.hashedKey)
			case ScopeClient:
				c.clientKeys = append(c.clientKeys, k.hashedKey)
			}
		}
		c.revoked = revoked
		if g.r.putManaged(c) && !g.shadowed[owner] {
			g.shadowed[owner] = true
			g.log.Warn("a tunnel in the store has the id of a configured tunnel: the configured one is served", "tunnel", owner)
		}
	}
}

type scopedKey struct {
	hashedKey
	scope string
}

// keysLocked returns an owner's active keys and revoked hashes, in creation
// order.
func (g *registry) keysLocked(owner string) ([]scopedKey, []revokedKey) {
	ks := slices.Collect(func(yield func(*storedKey) bool) {
		for _, k := range g.byOwner[owner] {
			if !yield(k) {
				return
			}
		}
	})
	slices.SortFunc(ks, func(a, b *storedKey) int { return cmp.Compare(a.rev, b.rev) })
	var keys []scopedKey
	var revoked []revokedKey
	for _, k := range ks {
		if k.doc.RevokedAt != 0 {
			revoked = append(revoked, revokedKey{scope: k.doc.Scope, sum: k.sum, at: k.doc.RevokedAt})
			continue
		}
		keys = append(keys, scopedKey{hashedKey: hashedKey{id: k.doc.ID, name: k.doc.Name, sum: k.sum}, scope: k.doc.Scope})
	}
	return keys, revoked
}

func validScope(s string) bool { return s == ScopeRuntime || s == ScopeClient || s == ScopeAdmin }

// checkTunnelDoc validates a stored tunnel.
func checkTunnelDoc(d tunnelDoc) error {
	switch d.AuthMode {
	case AuthClientKey, AuthOAuth, AuthPublic:
	default:
		return fmt.Errorf("auth_mode %q", d.AuthMode)
	}
	return nil
}

// --- operations of the admin API ---

// createTunnel stores a new tunnel with a fresh id.
func (g *registry) createTunnel(ctx context.Context, d tunnelDoc) (tunnelDoc, error) {
	d.ID = NewTunnelID()
	d.CreatedAt = time.Now().Unix()
	b, _ := json.Marshal(d)
	rev, err := g.st.Create(ctx, recTunnel+d.ID, b)
	if err != nil {
		return tunnelDoc{}, err
	}
	g.applyLocal(store.Change{Record: store.Record{Key: recTunnel + d.ID, Value: b, Revision: rev}})
	return d, nil
}

// updateTunnel changes a stored tunnel with edit, retrying on a concurrent
// change.
func (g *registry) updateTunnel(ctx context.Context, id string, edit func(*tunnelDoc) error) (tunnelDoc, error) {
	for {
		rec, err := g.st.Get(ctx, recTunnel+id)
		if errors.Is(err, store.ErrNotFound) {
			return tunnelDoc{}, errNoTunnel
		}
		if err != nil {
			return tunnelDoc{}, err
		}
		var d tunnelDoc
		if err := json.Unmarshal(rec.Value, &d); err != nil {
			return tunnelDoc{}, fmt.Errorf("relay: stored tunnel %s: %w", id, err)
		}
		if err := edit(&d); err != nil {
			return tunnelDoc{}, err
		}
		b, _ := json.Marshal(d)
		rev, err := g.st.Update(ctx, rec.Key, b, rec.Revision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return tunnelDoc{}, errNoTunnel
		}
		if err != nil {
			return tunnelDoc{}, err
		}
		g.applyLocal(store.Change{Record: store.Record{Key: rec.Key, Value: b, Revision: rev}})
		return d, nil
	}
}

// deleteTunnel removes a stored tunnel and then its keys.
func (g *registry) deleteTunnel(ctx context.Context, id string) error {
	err := g.st.Delete(ctx, recTunnel+id)
	if errors.Is(err, store.ErrNotFound) {
		return errNoTunnel
	}
	if err != nil {
		return err
	}
	g.applyLocal(store.Change{Record: store.Record{Key: recTunnel + id}, Deleted: true})
	g.mu.Lock()
	var ids []string
	for kid := range g.byOwner[id] {
		ids = append(ids, kid)
	}
	g.mu.Unlock()
	// The tunnel is gone, so its keys grant nothing already; removing them
	// keeps the store tidy (one left behind by a failure here is harmless).
	for _, kid := range ids {
		if err := g.st.Delete(ctx, recKey+kid); err == nil || errors.Is(err, store.ErrNotFound) {
			g.applyLocal(store.Change{Record: store.Record{Key: recKey + kid}, Deleted: true})
		} else {
			g.log.Warn("store: tunnel deleted, one of its keys was not", "tunnel", id, "key_id", kid, "err", err)
		}
	}
	return nil
}

// createKey mints a key of scope for tunnelID ("" for admin keys) and
// stores its hash; the key itself is returned once and never kept.
func (g *registry) createKey(ctx context.Context, scope, tunnelID, name string) (keyDoc, string, error) {
	g.mu.Lock()
	if tunnelID != "" && g.tunnels[tunnelID] == nil {
		g.mu.Unlock()
		return keyDoc{}, "", errNoTunnel
	}
	n := 0
	for _, k := range g.byOwner[tunnelID] {
		if k.doc.RevokedAt == 0 {
			n++
		}
	}
	g.mu.Unlock()
	if n >= maxKeysPerOwner {
		return keyDoc{}, "", errTooMany
	}
	prefix := map[string]string{ScopeRuntime: prefixRuntime, ScopeClient: prefixClient, ScopeAdmin: prefixAdmin}[scope]
	secret := NewKey(prefix)
	sum := sha256.Sum256([]byte(secret))
	d := keyDoc{ID: newKeyID(), Scope: scope, TunnelID: tunnelID, Name: name, SHA256: hex.EncodeToString(sum[:]),
		Redacted: redact(secret, prefix), CreatedAt: time.Now().Unix()}
	b, _ := json.Marshal(d)
	rev, err := g.st.Create(ctx, recKey+d.ID, b)
	if err != nil {
		return keyDoc{}, "", err
	}
	g.applyLocal(store.Change{Record: store.Record{Key: recKey + d.ID, Value: b, Revision: rev}})
	return d, secret, nil
}

// revokeKey marks a key revoked (it stays listed, and its holder is told
// why it fails). Revoking a revoked key changes nothing. The last admin key
// is not revoked when the configuration holds none: that would lock every
// operator out.
func (g *registry) revokeKey(ctx context.Context, tunnelID, keyID string) (keyDoc, error) {
	for {
		rec, err := g.st.Get(ctx, recKey+keyID)
		if errors.Is(err, store.ErrNotFound) {
			return keyDoc{}, errNoKey
		}
		if err != nil {
			return keyDoc{}, err
		}
		var d keyDoc
		if err := json.Unmarshal(rec.Value, &d); err != nil {
			return keyDoc{}, fmt.Errorf("relay: stored key %s: %w", keyID, err)
		}
		if d.TunnelID != tunnelID {
			return keyDoc{}, errNoKey
		}
		if d.RevokedAt != 0 {
			return d, nil
		}
		if d.Scope == ScopeAdmin && g.r.cfgAdminCount() == 0 && g.activeAdmins() <= 1 {
			return keyDoc{}, errLastAdmin
		}
		d.RevokedAt = time.Now().Unix()
		b, _ := json.Marshal(d)
		rev, err := g.st.Update(ctx, rec.Key, b, rec.Revision)
		if errors.Is(err, store.ErrConflict) {
			continue
		}
		if errors.Is(err, store.ErrNotFound) {
			return keyDoc{}, errNoKey
		}
		if err != nil {
			return keyDoc{}, err
		}
		g.applyLocal(store.Change{Record: store.Record{Key: rec.Key, Value: b, Revision: rev}})
		return d, nil
	}
}

func (g *registry) activeAdmins() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, k := range g.byOwner[""] {
		if k.doc.RevokedAt == 0 {
			n++
		}
	}
	return n
}

// bootstrap mints the first admin key when neither the store nor the
// configuration has one and none was ever minted (the record
// meta.bootstrap, created by whichever replica gets there first). It
// returns "" otherwise.
func (g *registry) bootstrap(ctx context.Context) (string, error) {
	if g.r.cfgAdminCount() > 0 || g.activeAdmins() > 0 {
		return "", nil
	}
	b, _ := json.Marshal(map[string]int64{"created_at": time.Now().Unix()})
	if _, err := g.st.Create(ctx, recBootstrap, b); errors.Is(err, store.ErrExists) {
		return "", nil
	} else if err != nil {
		return "", err
	}
	_, secret, err := g.createKey(ctx, ScopeAdmin, "", "bootstrap")
	return secret, err
}

// tunnelDocs returns the stored tunnels sorted by id.
func (g *registry) tunnelDocs() []tunnelDoc {
	g.mu.Lock()
	defer g.mu.Unlock()
	out := make([]tunnelDoc, 0, len(g.tunnels))
	for _, t := range g.tunnels {
		out = append(out, t.doc)
	}
	slices.SortFunc(out, func(a, b tunnelDoc) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// tunnelDoc returns one stored tunnel.
func (g *registry) tunnelDoc(id string) (tunnelDoc, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	t, ok := g.tunnels[id]
	if !ok {
		return tunnelDoc{}, false
	}
	return t.doc, true
}

// keyDocs returns an owner's keys (revoked ones included) in creation
// order.
func (g *registry) keyDocs(owner string) []keyDoc {
	g.mu.Lock()
	defer g.mu.Unlock()
	ks := make([]*storedKey, 0, len(g.byOwner[owner]))
	for _, k := range g.byOwner[owner] {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b *storedKey) int { return cmp.Compare(a.rev, b.rev) })
	out := make([]keyDoc, len(ks))
	for i, k := range ks {
		out[i] = k.doc
	}
	return out
}

// keyDoc returns one key of an owner.
func (g *registry) keyDoc(owner, id string) (keyDoc, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	k, ok := g.keys[id]
	if !ok || k.doc.TunnelID != owner {
		return keyDoc{}, false
	}
	return k.doc, true
}

func newKeyID() string {
	var b [12]byte
	_, _ = rand.Read(b[:])
	return "key_" + hex.EncodeToString(b[:])
}

// redact shows the prefix, the first and the last four characters of a
// key: enough to tell keys apart, about 190 random bits still hidden.
func redact(key, prefix string) string {
	body := strings.TrimPrefix(key, prefix)
	if len(body) < 12 {
		return prefix + "..."
	}
	return prefix + body[:4] + "..." + body[len(body)-4:]
}
