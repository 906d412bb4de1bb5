package wire

// Sluice's oauth-as extension (docs/wire.md, docs/oauth.md): a relay serves
// a private authorization server (one only the agent can reach) under its
// own URL, and the agent makes the requests.
//
// Both sides must say so. The relay advertises ExtOAuthAS in
// HeaderExtensions; an agent whose main binding can reach the MCP server's
// authorization server offers it back on its polls. The relay sends
// CommandOAuthAS only for tunnels configured for it, and only while a
// connected agent offers the extension.
//
// The command names an endpoint, never a URL: the agent finds the
// authorization server in its own MCP server's protected-resource metadata
// (the first of authorization_servers), reads that server's metadata itself,
// and sends the request only to the URL the metadata declares for the
// endpoint, when that URL is on the authorization server's own origin. A
// relay cannot point the agent anywhere else.
//
// The answer is RespOAuthAS: resp_code is the authorization server's
// status, resp_headers its Content-Type, Location, Cache-Control, Pragma and
// WWW-Authenticate, resp_json its body when that is a JSON object (else
// null). Redirects are not followed: a Location is the client's to follow;
// one that leads back to the authorization server's own origin (a login
// page only the network can reach) is refused with 502.
const (
	// ExtOAuthAS names the oauth-as extension.
	ExtOAuthAS = "oauth-as"
	// CommandOAuthAS is the command type of one authorization server
	// request.
	CommandOAuthAS = "oauth_as"
	// RespOAuthAS answers CommandOAuthAS.
	RespOAuthAS = "oauth_as_response"
	// MaxOAuthASBody bounds a request body (and a response body) of the
	// extension.
	MaxOAuthASBody = 64 << 10
)

// Endpoints a CommandOAuthAS may name: the authorization server's metadata
// document itself, or one of the endpoints its metadata declares (by their
// RFC 8414 member names).
const (
	ASMetadata      = "metadata"
	ASAuthorization = "authorization_endpoint"
	ASToken         = "token_endpoint"
	ASRegistration  = "registration_endpoint"
	ASJWKS          = "jwks_uri"
)

// ValidASEndpoint reports whether e is an endpoint a CommandOAuthAS may
// name.
func ValidASEndpoint(e string) bool {
	switch e {
	case ASMetadata, ASAuthorization, ASToken, ASRegistration, ASJWKS:
		return true
	}
	return false
}

// ASRequest is the oauth_as member of a CommandOAuthAS.
type ASRequest struct {
	Endpoint string `json:"endpoint"`
	Method   string `json:"method"`          // GET or POST
	Query    string `json:"query,omitempty"` // the raw query of the client's request
	Body     string `json:"body,omitempty"`  // the client's body (form or JSON: UTF-8 text)
}
