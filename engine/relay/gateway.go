package relay

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Gateway mode (AuthOAuthGateway): the relay is the OAuth resource server
// of the tunnel. It validates each bearer token itself, as a JWT against
// the authorization server's key set or by token introspection (RFC 7662),
// with the tunnel's public URL as the audience, and forwards no token: the
// MCP server trusts the relay instead (OAuthConfig.UpstreamHeader). See
// docs/oauth.md and RATIONALE.md.

// tokenCacheTTL bounds how long a validated token is remembered: its
// verdict is reused until then, or until the token expires if sooner.
const tokenCacheTTL = 60 * time.Second

// introspectionCacheTTL is tokenCacheTTL for introspected tokens: shorter,
// since introspection is how revocation is seen.
const introspectionCacheTTL = 30 * time.Second

// maxTokenCache bounds the validated tokens remembered per tunnel.
const maxTokenCache = 4096

// jwtMethods are the signature algorithms a token may use: asymmetric only
// (a shared-secret algorithm would let anyone who knows a JWKS public key
// mint tokens, and "none" is never accepted).
var jwtMethods = []string{"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}

// tokenError is the front door's refusal of a bearer token (RFC 6750
// section 3.1): 401 invalid_token or 403 insufficient_scope.
type tokenError struct {
	status int
	code   string // invalid_token, insufficient_scope
	desc   string
}

func (e *tokenError) Error() string { return e.code + ": " + e.desc }

func invalidToken(desc string) *tokenError {
	return &tokenError{status: http.StatusUnauthorized, code: "invalid_token", desc: desc}
}

// gateway validates the bearer tokens of one oauth-gateway tunnel.
type gateway struct {
	conf     OAuthConfig // as configured (reloads keep a gateway whose config did not change)
	audience string      // the tunnel's public URL: tokens must be for it
	client   *http.Client

	parser *jwt.Parser
	keys   *jwks // nil with introspection

	cacheMu sync.RWMutex
	cache   map[[32]byte]validToken
}

// validToken is a remembered verdict on a good token.
type validToken struct {
	subject string
	until   time.Time
}

func newGateway(c OAuthConfig, audience string, client *http.Client) *gateway {
	g := &gateway{conf: c, audience: audience, client: client, cache: map[[32]byte]validToken{}}
	if c.IntrospectionURL == "" {
		g.keys = &jwks{client: client, issuer: c.Issuer, url: c.JWKSURL, minRefresh: jwksMinRefresh}
		g.parser = jwt.NewParser(jwt.WithValidMethods(jwtMethods), jwt.WithIssuer(c.Issuer),
			jwt.WithAudience(audience), jwt.WithExpirationRequired(), jwt.WithLeeway(30*time.Second))
	}
	return g
}

// accessClaims are the claims of a JWT access token the relay reads
// (RFC 9068).
type accessClaims struct {
	jwt.RegisteredClaims
	Scope    string   `json:"scope"`
	Scp      []string `json:"scp"`
	ClientID string   `json:"client_id"`
}

// verify checks token and returns its subject (the caller), or the refusal
// to answer with. An error wrapping errASUnavailable means the
// authorization server could not be asked: the token is neither good nor
// bad.
func (g *gateway) verify(ctx context.Context, token string) (string, error) {
	key := sha256.Sum256([]byte(token))
	now := time.Now()
	g.cacheMu.RLock()
	v, ok := g.cache[key]
	g.cacheMu.RUnlock()
	if ok && now.Before(v.until) {
		return v.subject, nil
	}
	var (
		subject string
		scopes  []string
		exp     time.Time
		err     error
	)
	if g.keys != nil {
		subject, scopes, exp, err = g.verifyJWT(ctx, token)
	} else {
		subject, scopes, exp, err = g.introspect(ctx, token)
	}
	if err != nil {
		return "", err
	}
	for _, want := range g.conf.Scopes {
		if !slices.Contains(scopes, want) {
			return "", &tokenError{status: http.StatusForbidden, code: "insufficient_scope",
				desc: "the token lacks a scope this resource requires"}
		}
	}
	ttl := tokenCacheTTL
	if g.keys == nil {
		ttl = introspectionCacheTTL
	}
	until := now.Add(ttl)
	if !exp.IsZero() && exp.Before(until) {
		until = exp
	}
	g.remember(key, validToken{subject: subject, until: until})
	return subject, nil
}

// remember stores a verdict, making room by dropping expired entries, or
// arbitrary ones when none has expired.
func (g *gateway) remember(key [32]byte, v validToken) {
	g.cacheMu.Lock()
	defer g.cacheMu.Unlock()
	if len(g.cache) >= maxTokenCache {
		now := time.Now()
		n := 0
		for k, e := range g.cache {
			if now.After(e.until) || n < maxTokenCache/8 {
				delete(g.cache, k)
				n++
			}
		}
	}
	g.cache[key] = v
}

func (g *gateway) verifyJWT(ctx context.Context, token string) (string, []string, time.Time, error) {
	var claims accessClaims
	_, err := g.parser.ParseWithClaims(token, &claims, func(t *jwt.Token) (any, error) {
		if typ, _ := t.Header["typ"].(string); !accessTokenType(typ) {
			return nil, errNotAccessToken
		}
		kid, _ := t.Header["kid"].(string)
		return g.keys.key(ctx, kid)
	})
	if err != nil {
		return "", nil, time.Time{}, jwtError(err)
	}
	scopes := strings.Fields(claims.Scope)
	scopes = append(scopes, claims.Scp...)
	sub := claims.Subject
	if sub == "" {
		sub = claims.ClientID
	}
	var exp time.Time
	if claims.ExpiresAt != nil {
		exp = claims.ExpiresAt.Time
	}
	return sub, scopes, exp, nil
}

var errNotAccessToken = errors.New("not an access token")

// accessTokenType reports whether a JWT typ header may be an access token:
// RFC 9068's at+jwt, or the generic JWT (or none) that many authorization
// servers write.
func accessTokenType(typ string) bool {
	switch strings.ToLower(typ) {
	case "", "jwt", "at+jwt", "application/at+jwt":
		return true
	}
	return false
}

// jwtError maps a parse or validation failure to the refusal a client
// sees, keeping the authorization server's unavailability apart.
func jwtError(err error) error {
	switch {
	case errors.Is(err, errASUnavailable):
		return err
	case errors.Is(err, jwt.ErrTokenExpired):
		return invalidToken("the token has expired")
	case errors.Is(err, jwt.ErrTokenInvalidAudience):
		return invalidToken("the token is for another resource")
	case errors.Is(err, jwt.ErrTokenInvalidIssuer):
		return invalidToken("the token was issued by another authorization server")
	case errors.Is(err, jwt.ErrTokenSignatureInvalid):
		return invalidToken("the token's signature is not valid")
	case errors.Is(err, errUnknownKey):
		return invalidToken("the token is signed with a key the authorization server does not publish")
	case errors.Is(err, errNotAccessToken):
		return invalidToken("the token is not an access token")
	case errors.Is(err, jwt.ErrTokenNotValidYet), errors.Is(err, jwt.ErrTokenUsedBeforeIssued):
		return invalidToken("the token is not valid yet")
	case errors.Is(err, jwt.ErrTokenRequiredClaimMissing):
		return invalidToken("the token lacks a required claim")
	}
	return invalidToken("the token is malformed or not a JWT this relay accepts")
}

// verificationKeys wraps several keys for a token without a kid: the
// signature must verify with one of them.
func verificationKeys(ks []any) any {
	set := jwt.VerificationKeySet{}
	for _, k := range ks {
		set.Keys = append(set.Keys, k)
	}
	return set
}

// introspection is the part of an RFC 7662 answer the relay reads.
type introspection struct {
	Active   bool            `json:"active"`
	Scope    string          `json:"scope"`
	ClientID string          `json:"client_id"`
	Subject  string          `json:"sub"`
	Issuer   string          `json:"iss"`
	Audience json.RawMessage `json:"aud"`
	Exp      *float64        `json:"exp"`
	Nbf      *float64        `json:"nbf"`
}

// introspect asks the authorization server about token (RFC 7662): it must
// be active, unexpired, from the configured issuer when the answer names
// one, and for this resource (aud).
func (g *gateway) introspect(ctx context.Context, token string) (string, []string, time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, asFetchTimeout)
	defer cancel()
	form := url.Values{"token": {token}, "token_type_hint": {"access_token"}}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, g.conf.IntrospectionURL, strings.NewReader(form.Encode()))
	if err != nil {
		return "", nil, time.Time{}, fmt.Errorf("%w: %v", errASUnavailable, err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	if g.conf.IntrospectionClientID != "" {
		req.SetBasicAuth(url.QueryEscape(g.conf.IntrospectionClientID), url.QueryEscape(g.conf.IntrospectionClientSecret))
	}
	status, body, err := doAS(g.client, req)
	if err != nil {
		return "", nil, time.Time{}, err
	}
	var in introspection
	if jerr := json.Unmarshal(body, &in); jerr != nil || status != http.StatusOK {
		// Some servers answer an inactive token with an error status and
		// {"active":false}: that is a verdict. Anything else is an outage
		// (a 401 here is usually the relay's own credentials).
		if jerr == nil && !in.Active && bytesHasActiveFalse(body) {
			return "", nil, time.Time{}, invalidToken("the token is not active")
		}
		return "", nil, time.Time{}, fmt.Errorf("%w: introspection answered status %d", errASUnavailable, status)
	}
	now := time.Now()
	var exp time.Time
	switch {
	case !in.Active:
		return "", nil, time.Time{}, invalidToken("the token is not active")
	case in.Exp != nil && now.After(unixTime(*in.Exp)):
		return "", nil, time.Time{}, invalidToken("the token has expired")
	case in.Nbf != nil && now.Add(30*time.Second).Before(unixTime(*in.Nbf)):
		return "", nil, time.Time{}, invalidToken("the token is not valid yet")
	case in.Issuer != "" && in.Issuer != g.conf.Issuer:
		return "", nil, time.Time{}, invalidToken("the token was issued by another authorization server")
	case !audienceHas(in.Audience, g.audience):
		return "", nil, time.Time{}, invalidToken("the token is for another resource")
	}
	if in.Exp != nil {
		exp = unixTime(*in.Exp)
	}
	sub := in.Subject
	if sub == "" {
		sub = in.ClientID
	}
	return sub, strings.Fields(in.Scope), exp, nil
}

// bytesHasActiveFalse reports whether an introspection answer states
// "active": false (rather than leaving it out).
func bytesHasActiveFalse(body []byte) bool {
	var m struct {
		Active *bool `json:"active"`
	}
	return json.Unmarshal(body, &m) == nil && m.Active != nil && !*m.Active
}

func unixTime(f float64) time.Time { return time.Unix(int64(f), 0) }

// audienceHas reports whether an aud member (a string or an array of
// strings) names want.
func audienceHas(raw json.RawMessage, want string) bool {
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return one == want
	}
	var many []string
	if json.Unmarshal(raw, &many) == nil {
		return slices.Contains(many, want)
	}
	return false
}
