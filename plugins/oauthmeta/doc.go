// Package oauthmeta is the logic of the first-party oauthmeta plugin, which runs
// in the relay's chain and makes an OAuth-protected MCP server reachable through
// the tunnel (RFC 9728):
//
//   - hook http_response: in a protected-resource metadata document, the
//     top-level "resource" member becomes the relay's public MCP URL;
//   - hooks response and http_response: in WWW-Authenticate headers, only the
//     resource_metadata parameter becomes the relay's metadata URL.
//
// Both edits are minimal byte edits: key order, realm, scope, error,
// error_description and everything else stay byte for byte, and
// authorization_servers is never touched. "{tunnel}" in a configured URL is
// replaced by the message's tunnel id.
//
// The Wasm entry point is ./cmd; Plugin returns the sdk.Plugin it registers.
package oauthmeta
