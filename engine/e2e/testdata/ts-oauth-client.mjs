// ts-oauth-client.mjs is a headless MCP OAuth client built on the official
// TypeScript SDK: its auth() flow (RFC 9728 discovery, RFC 8414 metadata,
// dynamic client registration, PKCE, RFC 8707 resource indicator) with an
// in-memory OAuthClientProvider whose "browser" follows the authorization
// redirect with fetch (redirect: manual) and reads the code from Location.
// It prints one JSON object with what it saw; the Go tests (oauth_test.go)
// check it.
//
// Environment:
//   MCP_URL        the MCP endpoint (the relay's URL) (required)
//   MCP_SDK_DIR    the installed @modelcontextprotocol/sdk package (required)
//   ALLOW_ORIGINS  comma-separated origins the client may contact; any other
//                  fetch is refused and recorded (optional: all allowed)
//   TOOL, TOOL_ARGS  the tool to call and its JSON arguments
//
// Steps: an unauthenticated initialize (recording status and
// WWW-Authenticate), then connect with the auth provider, which discovers,
// registers and sends the "browser" to the authorization endpoint; the code
// is exchanged (finishAuth), the client connects again with the token, lists
// tools and calls one.
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const url = process.env.MCP_URL;
const sdk = process.env.MCP_SDK_DIR;
if (!url || !sdk) {
  console.error("MCP_URL and MCP_SDK_DIR are required");
  process.exit(2);
}
const allow = (process.env.ALLOW_ORIGINS || "").split(",").filter(Boolean);
const tool = process.env.TOOL || "greet";
const toolArgs = JSON.parse(process.env.TOOL_ARGS || '{"name":"tunnel"}');
const load = (p) => import(pathToFileURL(join(sdk, "dist", "esm", p)).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const { UnauthorizedError } = await load("client/auth.js");

const out = { fetched: [], refused: [] };

// guardedFetch records every URL the client contacts and refuses those off
// the allowed origins: the test proves where the client did (not) go.
async function guardedFetch(input, init) {
  const u = new URL(typeof input === "string" || input instanceof URL ? input : input.url);
  const method = (init && init.method) || (input && input.method) || "GET";
  if (allow.length > 0 && !allow.includes(u.origin)) {
    out.refused.push(`${method} ${u.origin}${u.pathname}`);
    throw new TypeError(`test client: ${u.origin} is not an allowed origin`);
  }
  out.fetched.push(`${method} ${u.origin}${u.pathname}`);
  return fetch(input, init);
}

const redirectUrl = "http://127.0.0.1:9/sluice-e2e-callback"; // never contacted
let clientInfo, tokens, verifier, code;
const provider = {
  get redirectUrl() {
    return redirectUrl;
  },
  get clientMetadata() {
    return {
      client_name: "sluice-e2e-oauth-client",
      redirect_uris: [redirectUrl],
      grant_types: ["authorization_code", "refresh_token"],
      response_types: ["code"],
      token_endpoint_auth_method: "client_secret_post",
    };
  },
  state() {
    return "sluice-e2e-state";
  },
  clientInformation() {
    return clientInfo;
  },
  saveClientInformation(info) {
    clientInfo = info;
    out.clientId = info.client_id;
    out.clientSecret = info.client_secret || "";
  },
  tokens() {
    return tokens;
  },
  saveTokens(t) {
    tokens = t;
    out.token = t.access_token;
  },
  saveCodeVerifier(v) {
    verifier = v;
  },
  codeVerifier() {
    return verifier;
  },
  // The headless "browser": the authorization endpoint approves at once and
  // redirects to redirect_uri with the code.
  async redirectToAuthorization(authorizationUrl) {
    const au = new URL(authorizationUrl);
    out.authorize = {
      origin: au.origin,
      resource: au.searchParams.get("resource"),
      codeChallengeMethod: au.searchParams.get("code_challenge_method"),
      hasChallenge: !!au.searchParams.get("code_challenge"),
    };
    const res = await guardedFetch(au, { redirect: "manual" });
    out.authorizeStatus = res.status;
    const loc = res.headers.get("location");
    if (!loc) throw new Error(`authorization endpoint answered ${res.status} without a Location`);
    const back = new URL(loc);
    out.redirectedTo = back.origin + back.pathname;
    out.callbackState = back.searchParams.get("state");
    out.callbackIss = back.searchParams.get("iss");
    code = back.searchParams.get("code");
    out.code = code || "";
    if (!code) throw new Error(`no code in the redirect: ${back.searchParams.get("error") || "?"}`);
  },
};

function text(result) {
  return (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

try {
  // 1. Unauthenticated: the MCP client's first call.
  const bare = await guardedFetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json", Accept: "application/json, text/event-stream" },
    body: JSON.stringify({
      jsonrpc: "2.0", id: 0, method: "initialize",
      params: { protocolVersion: "2025-11-25", capabilities: {}, clientInfo: { name: "probe", version: "1" } },
    }),
  });
  out.unauthStatus = bare.status;
  out.unauthChallenge = bare.headers.get("www-authenticate") || "";
  await bare.text();

  // 2. The SDK's flow, up to the redirect.
  let transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: guardedFetch });
  let client = new Client({ name: "sluice-e2e-oauth", version: "1.0.0" });
  try {
    await client.connect(transport);
    throw new Error("connected without authorizing");
  } catch (err) {
    if (!(err instanceof UnauthorizedError)) throw err;
  }
  if (!code) throw new Error("the authorization flow did not reach the redirect");
  await transport.finishAuth(code);

  // 3. With the token.
  transport = new StreamableHTTPClientTransport(new URL(url), { authProvider: provider, fetch: guardedFetch });
  client = new Client({ name: "sluice-e2e-oauth", version: "1.0.0" });
  await client.connect(transport);
  const list = await client.listTools();
  out.tools = list.tools.map((t) => t.name);
  const res = await client.callTool({ name: tool, arguments: toolArgs });
  out.result = text(res);
  try {
    await transport.terminateSession();
  } catch {
    // a stateless or gateway server may not keep sessions
  }
  await client.close();
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.error = String(err && err.stack ? err.stack : err);
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
