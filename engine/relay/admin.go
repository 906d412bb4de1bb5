package relay

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/sluicemcp/sluice/engine/relay/store"
	"github.com/sluicemcp/sluice/engine/wire"
)

// The admin API (on the admin listener, guarded by admin keys) follows the
// paths and shapes of OpenAI's tunnel management API where it has them
// (POST/GET /v1/tunnels, GET/POST/DELETE /v1/tunnels/{id}; admin keys at
// /v1/organization/admin_api_keys, lists as {"object":"list","data":…}), so
// its documentation reads across. docs/self-hosted-relay.md is the
// reference.

// Object names in admin API answers.
const (
	objTunnel   = "tunnel"
	objKey      = "tunnel.key"
	objAdminKey = "organization.admin_api_key"
	objList     = "list"
)

// Limits of admin API input.
const (
	maxAdminBody       = 64 << 10
	maxNameLen         = 256
	maxDescriptionLen  = 1024
	maxCallerLen       = 128
	maxResponseTimeout = time.Hour
	adminCallTimeout   = 10 * time.Second
)

// codeManagementRequired is the OpenAPI code for a caller without tunnel
// management permission.
const codeManagementRequired = "tunnel_management_permission_required"

// apiTunnel is a tunnel in admin API answers.
type apiTunnel struct {
	Object          string `json:"object"`
	ID              string `json:"id"`
	Name            string `json:"name"`
	Description     string `json:"description"`
	AuthMode        string `json:"auth_mode"`
	ResponseTimeout string `json:"response_timeout"`
	// ReadOnly: the tunnel comes from the relay's configuration
	// (relay.tunnels); change it there.
	ReadOnly       bool  `json:"read_only"`
	CreatedAt      int64 `json:"created_at,omitempty"`
	AgentConnected bool  `json:"agent_connected"`
	Deleted        bool  `json:"deleted,omitempty"`
}

// apiKey is a key in admin API answers. Value is set only in the answer
// that created it.
type apiKey struct {
	Object        string `json:"object"`
	ID            string `json:"id"`
	TunnelID      string `json:"tunnel_id,omitempty"`
	Scope         string `json:"scope"`
	Name          string `json:"name"`
	RedactedValue string `json:"redacted_value,omitempty"`
	Value         string `json:"value,omitempty"`
	CreatedAt     int64  `json:"created_at,omitempty"`
	RevokedAt     *int64 `json:"revoked_at"`
	ReadOnly      bool   `json:"read_only,omitempty"`
}

// apiList is a list of keys.
type apiList struct {
	Object  string   `json:"object"`
	Data    []apiKey `json:"data"`
	FirstID string   `json:"first_id,omitempty"`
	LastID  string   `json:"last_id,omitempty"`
	HasMore bool     `json:"has_more"`
}

// apiTunnels is a list of tunnels ({"tunnels":[…]}, as OpenAI's).
type apiTunnels struct {
	Tunnels []apiTunnel `json:"tunnels"`
	HasMore bool        `json:"has_more"`
	LastID  string      `json:"last_id,omitempty"`
}

// apiDeleted answers a key's revocation.
type apiDeleted struct {
	Object  string `json:"object"`
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}

// tunnelInput is the body of POST /v1/tunnels and POST /v1/tunnels/{id}.
type tunnelInput struct {
	Name            *string `json:"name"`
	Description     *string `json:"description"`
	AuthMode        *string `json:"auth_mode"`
	ResponseTimeout *string `json:"response_timeout"`
	// WorkspaceIDs and OrganizationIDs are what OpenAI's admin client sends
	// with every tunnel it creates; a self-hosted relay has no workspaces
	// or organizations, so they are checked (lists of strings) and not kept.
	WorkspaceIDs    []string `json:"workspace_ids"`
	OrganizationIDs []string `json:"organization_ids"`
}

// keyInput is the body of POST …/keys and POST /v1/organization/admin_api_keys.
type keyInput struct {
	Scope string `json:"scope"`
	Name  string `json:"name"`
}

// adminRoutes adds the admin API to mux.
func (r *Relay) adminRoutes(mux *http.ServeMux) {
	h := func(pattern string, f func(http.ResponseWriter, *http.Request)) {
		mux.HandleFunc(pattern, r.adminOnly(f))
	}
	h("POST /v1/tunnels", r.handleCreateTunnel)
	h("GET /v1/tunnels", r.handleListTunnels)
	h("GET /v1/tunnels/{id}", r.handleGetTunnel)
	h("POST /v1/tunnels/{id}", r.handleUpdateTunnel)
	h("DELETE /v1/tunnels/{id}", r.handleDeleteTunnel)
	h("POST /v1/tunnels/{id}/keys", r.handleCreateKey)
	h("GET /v1/tunnels/{id}/keys", r.handleListKeys)
	h("GET /v1/tunnels/{id}/keys/{key}", r.handleGetKey)
	h("DELETE /v1/tunnels/{id}/keys/{key}", r.handleRevokeKey)
	h("POST /v1/organization/admin_api_keys", r.handleCreateKey)
	h("GET /v1/organization/admin_api_keys", r.handleListKeys)
	h("GET /v1/organization/admin_api_keys/{key}", r.handleGetKey)
	h("DELETE /v1/organization/admin_api_keys/{key}", r.handleRevokeKey)
}

// adminOnly runs f for callers with an admin key; others get 401 (or 429
// after too many failures).
func (r *Relay) adminOnly(f func(http.ResponseWriter, *http.Request)) func(http.ResponseWriter, *http.Request) {
	g := gate{surface: realmAdmin, realm: realmAdmin, scope: ScopeAdmin,
		invalid: "an admin key is required (Authorization: Bearer sk_adm_…)",
		refuse: func(w http.ResponseWriter, msg string) {
			w.Header().Set("WWW-Authenticate", "Bearer")
			writeAPIError(w, http.StatusUnauthorized, "invalid_request_error", codeManagementRequired, msg)
		}}
	return func(w http.ResponseWriter, req *http.Request) {
		if _, ok := r.pass(w, req, g, func() authResult {
			ak := r.admins.Load()
			return check(req, ak.keys, ak.revoked, ScopeAdmin)
		}); ok {
			f(w, req)
		}
	}
}

// adminTunnelID returns the path's tunnel id, answering 400 when malformed.
func adminTunnelID(w http.ResponseWriter, req *http.Request) (string, bool) {
	id := req.PathValue("id")
	if !wire.ValidTunnelID(id) {
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidTunnelIDFormat, "tunnel id must match ^tunnel_[a-z0-9]{32}$")
		return "", false
	}
	return id, true
}

func (r *Relay) handleCreateTunnel(w http.ResponseWriter, req *http.Request) {
	var in tunnelInput
	if !decodeAdmin(w, req, &in) {
		return
	}
	if in.Name == nil {
		writeAPIErrorParam(w, http.StatusBadRequest, "name", "name is required")
		return
	}
	d := tunnelDoc{AuthMode: AuthClientKey}
	if !applyTunnelInput(w, &d, in) {
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), adminCallTimeout)
	defer cancel()
	d, err := r.reg.createTunnel(ctx, d)
	if err != nil {
		r.adminFailed(w, "create tunnel", err)
		return
	}
	r.log.Info("tunnel created", "tunnel", d.ID)
	writeJSON(w, http.StatusOK, r.tunnelView(d.ID))
}

// applyTunnelInput validates in and sets its fields on d.
func applyTunnelInput(w http.ResponseWriter, d *tunnelDoc, in tunnelInput) bool {
	if in.Name != nil {
		if err := checkText(*in.Name, maxNameLen, true); err != nil {
			writeAPIErrorParam(w, http.StatusBadRequest, "name", "name "+err.Error())
			return false
		}
		d.Name = *in.Name
	}
	if in.Description != nil {
		if err := checkText(*in.Description, maxDescriptionLen, false); err != nil {
			writeAPIErrorParam(w, http.StatusBadRequest, "description", "description "+err.Error())
			return false
		}
		d.Description = *in.Description
	}
	if in.AuthMode != nil {
		switch *in.AuthMode {
		case AuthClientKey, AuthOAuth, AuthPublic:
			d.AuthMode = *in.AuthMode
		default:
			writeAPIErrorParam(w, http.StatusBadRequest, "auth_mode", "auth_mode must be client-key, oauth or public")
			return false
		}
	}
	if in.ResponseTimeout != nil {
		if *in.ResponseTimeout == "" {
			d.ResponseTimeout = ""
		} else {
			rt, err := time.ParseDuration(*in.ResponseTimeout)
			if err != nil || rt <= 0 || rt > maxResponseTimeout {
				writeAPIErrorParam(w, http.StatusBadRequest, "response_timeout", `response_timeout must be a duration from "1ms" to "1h" (or "" for the relay's default)`)
				return false
			}
			d.ResponseTimeout = rt.String()
		}
	}
	return true
}

func (r *Relay) handleListTunnels(w http.ResponseWriter, req *http.Request) {
	q := req.URL.Query()
	limit := 0
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 10000 {
			writeAPIErrorParam(w, http.StatusBadRequest, "limit", "limit must be an integer from 1 to 10000")
			return
		}
		limit = n
	}
	after := q.Get("after")
	ids := r.tunnelIDs()
	out := apiTunnels{Tunnels: []apiTunnel{}}
	for _, id := range ids {
		if after != "" && id <= after {
			continue
		}
		if limit > 0 && len(out.Tunnels) == limit {
			out.HasMore = true
			break
		}
		if v := r.tunnelView(id); v != nil {
			out.Tunnels = append(out.Tunnels, *v)
		}
	}
	if n := len(out.Tunnels); n > 0 {
		out.LastID = out.Tunnels[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// tunnelIDs are the ids of every tunnel, configured or stored, sorted.
func (r *Relay) tunnelIDs() []string {
	r.mu.RLock()
	ids := make([]string, 0, len(r.cfgConfs)+len(r.managed))
	for id := range r.cfgConfs {
		ids = append(ids, id)
	}
	for id := range r.managed {
		if _, dup := r.cfgConfs[id]; !dup {
			ids = append(ids, id)
		}
	}
	r.mu.RUnlock()
	slices.Sort(ids)
	return ids
}

// tunnelView is one tunnel as the admin API shows it (nil if unknown).
func (r *Relay) tunnelView(id string) *apiTunnel {
	r.mu.RLock()
	c := r.cfgConfs[id]
	if c == nil {
		c = r.managed[id]
	}
	t := r.tunnels[id]
	r.mu.RUnlock()
	if c == nil {
		return nil
	}
	v := &apiTunnel{Object: objTunnel, ID: c.id, Name: c.name, Description: c.description, AuthMode: c.authMode,
		ResponseTimeout: c.responseTimeout.String(), ReadOnly: c.source == sourceConfig, CreatedAt: c.createdAt}
	if t != nil {
		v.AgentConnected = t.connected(time.Now(), r.set.agentTimeout)
	}
	return v
}

func (r *Relay) handleGetTunnel(w http.ResponseWriter, req *http.Request) {
	id, ok := adminTunnelID(w, req)
	if !ok {
		return
	}
	v := r.tunnelView(id)
	if v == nil {
		writeNoTunnel(w, id)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// refuseReadOnly answers 409 for a configuration tunnel.
func (r *Relay) refuseReadOnly(w http.ResponseWriter, id string) bool {
	r.mu.RLock()
	_, cfg := r.cfgConfs[id]
	r.mu.RUnlock()
	if cfg {
		writeAPIError(w, http.StatusConflict, "invalid_request_error", "",
			"tunnel "+id+" comes from the relay's configuration (relay.tunnels) and is read-only here: change it in the config file")
	}
	return cfg
}

func (r *Relay) handleUpdateTunnel(w http.ResponseWriter, req *http.Request) {
	id, ok := adminTunnelID(w, req)
	if !ok || r.refuseReadOnly(w, id) {
		return
	}
	var in tunnelInput
	if !decodeAdmin(w, req, &in) {
		return
	}
	var bad bool
	ctx, cancel := context.WithTimeout(req.Context(), adminCallTimeout)
	defer cancel()
	_, err := r.reg.updateTunnel(ctx, id, func(d *tunnelDoc) error {
		if !applyTunnelInput(w, d, in) {
			bad = true
			return errBadInput
		}
		return nil
	})
	if bad {
		return
	}
	if err != nil {
		r.adminFailed(w, "update tunnel "+id, err)
		return
	}
	r.log.Info("tunnel updated", "tunnel", id)
	writeJSON(w, http.StatusOK, r.tunnelView(id))
}

var errBadInput = errors.New("bad input")

func (r *Relay) handleDeleteTunnel(w http.ResponseWriter, req *http.Request) {
	id, ok := adminTunnelID(w, req)
	if !ok || r.refuseReadOnly(w, id) {
		return
	}
	v := r.tunnelView(id)
	ctx, cancel := context.WithTimeout(req.Context(), adminCallTimeout)
	defer cancel()
	if err := r.reg.deleteTunnel(ctx, id); err != nil {
		r.adminFailed(w, "delete tunnel "+id, err)
		return
	}
	r.log.Info("tunnel deleted", "tunnel", id)
	if v == nil {
		v = &apiTunnel{Object: objTunnel, ID: id}
	}
	v.Deleted, v.AgentConnected = true, false
	writeJSON(w, http.StatusOK, v)
}

// keyOwner returns the tunnel id of a key route ("" for admin keys),
// answering 400, 404 or 409 itself; write says the route changes keys.
func (r *Relay) keyOwner(w http.ResponseWriter, req *http.Request, write bool) (string, bool) {
	if !strings.HasPrefix(req.URL.Path, "/v1/tunnels/") {
		return "", true
	}
	id, ok := adminTunnelID(w, req)
	if !ok {
		return "", false
	}
	if r.tunnelView(id) == nil {
		writeNoTunnel(w, id)
		return "", false
	}
	if write && r.refuseReadOnly(w, id) {
		return "", false
	}
	return id, true
}

func (r *Relay) handleCreateKey(w http.ResponseWriter, req *http.Request) {
	owner, ok := r.keyOwner(w, req, true)
	if !ok {
		return
	}
	var in keyInput
	if !decodeAdmin(w, req, &in) {
		return
	}
	switch {
	case owner == "" && in.Scope == "":
		in.Scope = ScopeAdmin
	case owner == "" && in.Scope != ScopeAdmin:
		writeAPIErrorParam(w, http.StatusBadRequest, "scope", "admin API keys have scope admin; runtime and client keys belong to a tunnel (POST /v1/tunnels/{id}/keys)")
		return
	case owner != "" && in.Scope != ScopeRuntime && in.Scope != ScopeClient:
		writeAPIErrorParam(w, http.StatusBadRequest, "scope", "scope must be runtime or client (admin keys: POST /v1/organization/admin_api_keys)")
		return
	}
	if in.Scope == ScopeClient {
		if err := checkCaller(in.Name); err != nil {
			writeAPIErrorParam(w, http.StatusBadRequest, "name", "name (the caller's identity) "+err.Error())
			return
		}
	} else if err := checkText(in.Name, maxNameLen, false); err != nil {
		writeAPIErrorParam(w, http.StatusBadRequest, "name", "name "+err.Error())
		return
	}
	if in.Name == "" {
		in.Name = in.Scope
	}
	ctx, cancel := context.WithTimeout(req.Context(), adminCallTimeout)
	defer cancel()
	d, secret, err := r.reg.createKey(ctx, in.Scope, owner, in.Name)
	if err != nil {
		r.adminFailed(w, "create key", err)
		return
	}
	r.log.Info("key created", "tunnel", owner, "key_id", d.ID, "scope", d.Scope)
	v := keyView(d)
	v.Value = secret
	writeJSON(w, http.StatusOK, v)
}

func keyView(d keyDoc) apiKey {
	v := apiKey{Object: objKey, ID: d.ID, TunnelID: d.TunnelID, Scope: d.Scope, Name: d.Name,
		RedactedValue: d.Redacted, CreatedAt: d.CreatedAt}
	if d.Scope == ScopeAdmin {
		v.Object = objAdminKey
	}
	if d.RevokedAt != 0 {
		at := d.RevokedAt
		v.RevokedAt = &at
	}
	return v
}

func (r *Relay) handleListKeys(w http.ResponseWriter, req *http.Request) {
	owner, ok := r.keyOwner(w, req, false)
	if !ok {
		return
	}
	out := apiList{Object: objList, Data: r.configKeys(owner)}
	for _, d := range r.reg.keyDocs(owner) {
		out.Data = append(out.Data, keyView(d))
	}
	if n := len(out.Data); n > 0 {
		out.FirstID, out.LastID = out.Data[0].ID, out.Data[n-1].ID
	}
	writeJSON(w, http.StatusOK, out)
}

// configKeys lists the configuration's keys of owner, read-only (only
// their hashes are kept, so nothing of their value is shown).
func (r *Relay) configKeys(owner string) []apiKey {
	out := []apiKey{}
	if owner == "" {
		for i := range r.cfgAdmins {
			out = append(out, apiKey{Object: objAdminKey, ID: "cfg_admin_" + strconv.Itoa(i), Scope: ScopeAdmin, Name: "relay.admin-key", ReadOnly: true})
		}
		return out
	}
	r.mu.RLock()
	c := r.cfgConfs[owner]
	r.mu.RUnlock()
	if c == nil {
		return out
	}
	out = append(out, apiKey{Object: objKey, ID: "cfg_runtime", TunnelID: owner, Scope: ScopeRuntime, Name: "runtime-key", ReadOnly: true})
	for i, k := range c.clientKeys {
		out = append(out, apiKey{Object: objKey, ID: "cfg_client_" + strconv.Itoa(i), TunnelID: owner, Scope: ScopeClient, Name: k.name, ReadOnly: true})
	}
	return out
}

func (r *Relay) handleGetKey(w http.ResponseWriter, req *http.Request) {
	owner, ok := r.keyOwner(w, req, false)
	if !ok {
		return
	}
	kid := req.PathValue("key")
	for _, k := range r.configKeys(owner) {
		if k.ID == kid {
			writeJSON(w, http.StatusOK, k)
			return
		}
	}
	d, found := r.reg.keyDoc(owner, kid)
	if !found {
		writeNoKey(w, kid)
		return
	}
	writeJSON(w, http.StatusOK, keyView(d))
}

func (r *Relay) handleRevokeKey(w http.ResponseWriter, req *http.Request) {
	owner, ok := r.keyOwner(w, req, true)
	if !ok {
		return
	}
	kid := req.PathValue("key")
	if strings.HasPrefix(kid, "cfg_") {
		writeAPIError(w, http.StatusConflict, "invalid_request_error", "", "key "+kid+" comes from the relay's configuration and is read-only here: change it in the config file")
		return
	}
	ctx, cancel := context.WithTimeout(req.Context(), adminCallTimeout)
	defer cancel()
	d, err := r.reg.revokeKey(ctx, owner, kid)
	if errors.Is(err, errNoKey) {
		writeNoKey(w, kid)
		return
	}
	if err != nil {
		r.adminFailed(w, "revoke key "+kid, err)
		return
	}
	r.log.Info("key revoked", "tunnel", owner, "key_id", kid, "scope", d.Scope)
	obj := objKey
	if d.Scope == ScopeAdmin {
		obj = objAdminKey
	}
	writeJSON(w, http.StatusOK, apiDeleted{Object: obj + ".deleted", ID: kid, Deleted: true})
}

// adminFailed answers an error from the registry or the store.
func (r *Relay) adminFailed(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, errNoTunnel):
		writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "no such tunnel")
	case errors.Is(err, errLastAdmin):
		writeAPIError(w, http.StatusConflict, "invalid_request_error", "",
			"this is the last admin key: create another one first (or set relay.admin-key), or nobody could manage the relay")
	case errors.Is(err, errTooMany):
		writeAPIError(w, http.StatusConflict, "invalid_request_error", "",
			fmt.Sprintf("at most %d active keys per tunnel (and %d admin keys): revoke one first", maxKeysPerOwner, maxKeysPerOwner))
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, store.ErrClosed):
		r.log.Error("admin: store unavailable", "op", what, "err", err)
		w.Header().Set("Retry-After", "1")
		writeAPIError(w, http.StatusServiceUnavailable, "server_error", "", "the relay's store did not answer: retry")
	default:
		r.log.Error("admin: store failed", "op", what, "err", err)
		writeAPIError(w, http.StatusInternalServerError, "server_error", "", what+" failed in the relay's store (see the relay's log)")
	}
}

func writeNoTunnel(w http.ResponseWriter, id string) {
	writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", "no tunnel "+id)
}

func writeNoKey(w http.ResponseWriter, id string) {
	writeAPIError(w, http.StatusNotFound, "invalid_request_error", "", fmt.Sprintf("no key %.64q here", id))
}

// decodeAdmin reads a JSON object into v: unknown fields, trailing data
// and oversized bodies are refused with 400 naming the problem.
func decodeAdmin(w http.ResponseWriter, req *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, req.Body, maxAdminBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil && dec.More() {
		err = errors.New("trailing data after the JSON object")
	}
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
		}
	}
	if err != nil {
		var mb *http.MaxBytesError
		if errors.As(err, &mb) {
			writeAPIError(w, http.StatusRequestEntityTooLarge, "invalid_request_error", wire.CodeRequestBodyTooLarge, "request body too large")
			return false
		}
		if errors.Is(err, io.EOF) {
			err = errors.New("empty body: want a JSON object")
		}
		writeAPIError(w, http.StatusBadRequest, "invalid_request_error", wire.CodeInvalidJSONPayload, "invalid body: "+err.Error())
		return false
	}
	return true
}

// checkText accepts valid UTF-8 without control characters, up to max
// bytes (and non-blank when required).
func checkText(s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return errors.New("is required")
	case len(s) > max:
		return fmt.Errorf("is longer than %d bytes", max)
	case !utf8.ValidString(s):
		return errors.New("is not valid UTF-8")
	case strings.ContainsFunc(s, unicode.IsControl):
		return errors.New("contains control characters")
	}
	return nil
}

// checkCaller accepts a client key's name: it becomes the caller identity
// plugins and the audit trail see, so it is plain: 1 to 128 of
// [A-Za-z0-9._@:-], starting with a letter or digit.
func checkCaller(s string) error {
	if s == "" || len(s) > maxCallerLen {
		return fmt.Errorf("must be 1 to %d characters", maxCallerLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || (i > 0 && strings.IndexByte("._@:-", c) >= 0)
		if !ok {
			return errors.New("must be letters, digits and . _ @ : - (starting with a letter or digit)")
		}
	}
	return nil
}
