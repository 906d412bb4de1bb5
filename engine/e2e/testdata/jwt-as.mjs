// jwt-as.mjs runs oauth2-mock-server, a third-party OAuth 2 / OpenID
// Connect server that signs real JWTs (RS256) and publishes its keys at
// /jwks and its metadata at /.well-known/openid-configuration, on
// 127.0.0.1:$PORT. It prints {"issuer": …} once listening, then serves
// until killed.
//
// For the gateway tests, a client_credentials request to /token may shape
// the access token with extra form fields (the server ignores unknown ones):
// test_aud (the audience; empty for none), test_sub, test_scope and
// test_exp (seconds from now, negative for an expired token).
//
// Environment: PORT (required), MOCK_DIR (the installed oauth2-mock-server).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const port = Number(process.env.PORT);
const dir = process.env.MOCK_DIR;
if (!port || !dir) {
  console.error("PORT and MOCK_DIR are required");
  process.exit(2);
}
const { OAuth2Server } = await import(pathToFileURL(join(dir, "dist", "index.mjs")).href);
const server = new OAuth2Server();
await server.issuer.keys.generate("RS256");
server.service.on("beforeTokenSigning", (token, req) => {
  const b = req.body || {};
  if (b.test_aud !== undefined) {
    if (b.test_aud === "") delete token.payload.aud;
    else token.payload.aud = b.test_aud;
  }
  token.payload.sub = b.test_sub || "jwt-user";
  if (b.test_scope !== undefined) token.payload.scope = b.test_scope;
  if (b.test_exp !== undefined) token.payload.exp = Math.floor(Date.now() / 1000) + Number(b.test_exp);
});
await server.start(port, "127.0.0.1");
process.stdout.write(JSON.stringify({ issuer: server.issuer.url }) + "\n");
