package relay

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// JWKS cache policy (RATIONALE.md, "Gateway mode").
const (
	// jwksMaxAge is how long a fetched key set is used before the next
	// validation fetches it again.
	jwksMaxAge = time.Hour
	// jwksMinRefresh bounds how often a token with an unknown kid may make
	// the relay fetch the key set again.
	jwksMinRefresh = 10 * time.Second
	// asFetchTimeout bounds one fetch from the authorization server
	// (metadata, key set, introspection).
	asFetchTimeout = 10 * time.Second
	// maxASBody bounds a document read from the authorization server.
	maxASBody = 1 << 20
)

// errASUnavailable wraps failures to reach the authorization server: the
// token could not be judged, which is not the client's fault.
var errASUnavailable = errors.New("authorization server unavailable")

// keySet is one fetched JWKS: the usable keys by kid, and all of them for
// tokens without a kid.
type keySet struct {
	byKID   map[string]crypto.PublicKey
	all     []crypto.PublicKey
	fetched time.Time
}

// jwks fetches and caches an authorization server's signing keys. Lookups
// read an immutable keySet through an atomic pointer; fetches are
// serialized, and a token with an unknown kid fetches again at most every
// minRefresh.
type jwks struct {
	client     *http.Client
	issuer     string
	url        string // configured jwks-url, or "" to read jwks_uri from the metadata
	minRefresh time.Duration

	set     atomic.Pointer[keySet]
	fetchMu sync.Mutex
	lastTry time.Time // fetchMu
}

// key returns the key for kid (or every key for a token without one),
// fetching the set when there is none yet, when it is older than
// jwksMaxAge, or when kid is unknown and the last fetch is older than
// minRefresh.
func (j *jwks) key(ctx context.Context, kid string) (any, error) {
	now := time.Now()
	s := j.set.Load()
	if s != nil && now.Sub(s.fetched) < jwksMaxAge {
		if k, ok := s.lookup(kid); ok {
			return k, nil
		}
	}
	s, err := j.refresh(ctx, s)
	if err != nil {
		return nil, err
	}
	if k, ok := s.lookup(kid); ok {
		return k, nil
	}
	return nil, errUnknownKey
}

var errUnknownKey = errors.New("the token's signing key is not in the authorization server's key set")

func (s *keySet) lookup(kid string) (any, bool) {
	if kid == "" {
		switch len(s.all) {
		case 0:
			return nil, false
		case 1:
			return s.all[0], true
		}
		ks := make([]any, len(s.all))
		for i, k := range s.all {
			ks[i] = k
		}
		return verificationKeys(ks), true
	}
	k, ok := s.byKID[kid]
	return k, ok
}

// refresh fetches the key set unless another goroutine did since seen was
// loaded, or the last try was less than minRefresh ago (then the current
// set stands).
func (j *jwks) refresh(ctx context.Context, seen *keySet) (*keySet, error) {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	cur := j.set.Load()
	if cur != seen && cur != nil {
		return cur, nil // fetched meanwhile
	}
	if cur != nil && time.Since(j.lastTry) < j.minRefresh && time.Since(cur.fetched) < jwksMaxAge {
		return cur, nil
	}
	j.lastTry = time.Now()
	s, err := j.fetch(ctx)
	if err != nil {
		if cur != nil && time.Since(cur.fetched) < 2*jwksMaxAge {
			return cur, nil // keep serving the last good set for a while
		}
		return nil, err
	}
	j.set.Store(s)
	return s, nil
}

// fetch reads the key set: from the configured URL, or from the jwks_uri of
// the issuer's metadata.
func (j *jwks) fetch(ctx context.Context) (*keySet, error) {
	u := j.url
	if u == "" {
		md, err := fetchASMetadata(ctx, j.client, j.issuer)
		if err != nil {
			return nil, err
		}
		if md.JWKSURI == "" {
			return nil, fmt.Errorf("%w: its metadata has no jwks_uri", errASUnavailable)
		}
		u = md.JWKSURI
	}
	body, err := getJSON(ctx, j.client, u)
	if err != nil {
		return nil, err
	}
	s, err := parseJWKS(body)
	if err != nil {
		return nil, fmt.Errorf("%w: key set: %v", errASUnavailable, err)
	}
	s.fetched = time.Now()
	return s, nil
}

// asMetadata is what the relay reads of RFC 8414 authorization server
// metadata.
type asMetadata struct {
	Issuer                string `json:"issuer"`
	JWKSURI               string `json:"jwks_uri"`
	IntrospectionEndpoint string `json:"introspection_endpoint"`
}

// metadataURLs returns the RFC 8414 well-known URL of issuer, then the
// OpenID Connect Discovery one.
func metadataURLs(issuer string) ([]string, error) {
	u, err := url.Parse(issuer)
	if err != nil {
		return nil, err
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/")
	origin := u.Scheme + "://" + u.Host
	return []string{
		origin + "/.well-known/oauth-authorization-server" + path,
		origin + path + "/.well-known/openid-configuration",
	}, nil
}

// fetchASMetadata reads the issuer's metadata (RFC 8414, then OpenID
// Connect Discovery) and checks that it names the issuer it was fetched for
// (RFC 8414 section 3.3): a document for another issuer is refused.
func fetchASMetadata(ctx context.Context, client *http.Client, issuer string) (*asMetadata, error) {
	urls, err := metadataURLs(issuer)
	if err != nil {
		return nil, fmt.Errorf("%w: issuer: %v", errASUnavailable, err)
	}
	var last error
	for _, u := range urls {
		body, err := getJSON(ctx, client, u)
		if err != nil {
			last = err
			continue
		}
		var md asMetadata
		if err := json.Unmarshal(body, &md); err != nil {
			last = fmt.Errorf("%w: metadata: %v", errASUnavailable, err)
			continue
		}
		if md.Issuer != issuer {
			return nil, fmt.Errorf("%w: its metadata names another issuer", errASUnavailable)
		}
		return &md, nil
	}
	return nil, last
}

// getJSON GETs u and returns a 200 body of at most maxASBody bytes.
func getJSON(ctx context.Context, client *http.Client, u string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, asFetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errASUnavailable, err)
	}
	req.Header.Set("Accept", "application/json")
	status, body, err := doAS(client, req)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%w: status %d", errASUnavailable, status)
	}
	return body, err
}

// doAS sends req and returns the status and a body of at most maxASBody
// bytes. Errors never hold the URL (it may name a private host, and errors
// are logged).
func doAS(client *http.Client, req *http.Request) (int, []byte, error) {
	resp, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, nil, fmt.Errorf("%w: %v", errASUnavailable, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxASBody+1))
	if err != nil {
		return 0, nil, fmt.Errorf("%w: read: %v", errASUnavailable, err)
	}
	if len(body) > maxASBody {
		return 0, nil, fmt.Errorf("%w: answer over %d bytes", errASUnavailable, maxASBody)
	}
	return resp.StatusCode, body, nil
}

// jwk is one JSON Web Key (RFC 7517), the members the relay reads.
type jwk struct {
	Kty string `json:"kty"`
	Kid string `json:"kid"`
	Use string `json:"use"`
	Alg string `json:"alg"`
	Crv string `json:"crv"`
	N   string `json:"n"`
	E   string `json:"e"`
	X   string `json:"x"`
	Y   string `json:"y"`
}

// parseJWKS reads a JWK Set. Keys that are not for signatures (use "enc")
// or of a type the relay does not verify with are skipped; a set with no
// usable key is an error.
func parseJWKS(b []byte) (*keySet, error) {
	var doc struct {
		Keys []jwk `json:"keys"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, err
	}
	s := &keySet{byKID: map[string]crypto.PublicKey{}}
	for _, k := range doc.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		pub, err := k.publicKey()
		if err != nil {
			continue
		}
		if k.Kid != "" {
			if _, dup := s.byKID[k.Kid]; dup {
				continue // the first key of a kid wins
			}
			s.byKID[k.Kid] = pub
		}
		s.all = append(s.all, pub)
	}
	if len(s.all) == 0 {
		return nil, errors.New("no usable signing key")
	}
	return s, nil
}

func (k *jwk) publicKey() (crypto.PublicKey, error) {
	dec := func(s string) ([]byte, error) { return base64.RawURLEncoding.DecodeString(strings.TrimRight(s, "=")) }
	switch k.Kty {
	case "RSA":
		n, err1 := dec(k.N)
		e, err2 := dec(k.E)
		if err1 != nil || err2 != nil || len(n) < 256 || len(e) == 0 || len(e) > 4 {
			return nil, errors.New("bad RSA key (a modulus under 2048 bits is refused)")
		}
		ei := int(new(big.Int).SetBytes(e).Int64())
		if ei < 3 || ei%2 == 0 {
			return nil, errors.New("bad RSA exponent")
		}
		return &rsa.PublicKey{N: new(big.Int).SetBytes(n), E: ei}, nil
	case "EC":
		var c elliptic.Curve
		switch k.Crv {
		case "P-256":
			c = elliptic.P256()
		case "P-384":
			c = elliptic.P384()
		case "P-521":
			c = elliptic.P521()
		default:
			return nil, errors.New("unsupported curve")
		}
		x, err1 := dec(k.X)
		y, err2 := dec(k.Y)
		size := (c.Params().BitSize + 7) / 8
		if err1 != nil || err2 != nil || len(x) != size || len(y) != size {
			return nil, errors.New("bad EC key")
		}
		// Build the uncompressed point and let crypto/ecdh-backed parsing
		// check that it is on the curve.
		pt := append([]byte{4}, append(x, y...)...)
		pub, err := ecdsa.ParseUncompressedPublicKey(c, pt)
		if err != nil {
			return nil, err
		}
		return pub, nil
	case "OKP":
		x, err := dec(k.X)
		if k.Crv != "Ed25519" || err != nil || len(x) != ed25519.PublicKeySize {
			return nil, errors.New("unsupported OKP key")
		}
		return ed25519.PublicKey(x), nil
	}
	return nil, errors.New("unsupported key type")
}
