// ts-binding-client.mjs calls one tool of an MCP server with the official
// TypeScript SDK client (StreamableHTTPClientTransport, the initialize
// handshake) and prints one JSON object with what it saw. The Go test
// (bindings_e2e_test.go) runs it through relay + agent against a binding
// plugin.
//
// Environment: MCP_URL (required), MCP_KEY (bearer client key, optional),
// MCP_SDK_DIR (the installed @modelcontextprotocol/sdk), TOOL, ARGS (JSON).
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const url = process.env.MCP_URL;
const key = process.env.MCP_KEY || "";
const sdk = process.env.MCP_SDK_DIR;
const tool = process.env.TOOL;
const args = JSON.parse(process.env.ARGS || "{}");
const load = (p) => import(pathToFileURL(join(sdk, "dist", "esm", p)).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");

const out = { events: [] };
const headers = key ? { Authorization: `Bearer ${key}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "sluice-binding-ts-client", version: "1.0.0" }, { capabilities: {} });
try {
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion || "";
  out.serverName = client.getServerVersion()?.name || "";
  out.tools = (await client.listTools()).tools.map((t) => t.name);
  const res = await client.callTool({ name: tool, arguments: args }, undefined, {
    onprogress: (p) => out.events.push(`progress:${p.progress}/${p.total}`),
    timeout: 30000,
  });
  out.events.push("result");
  out.text = (res.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  out.isError = !!res.isError;
  out.structured = res.structuredContent || null;
  await client.close();
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.error = String(err && err.message ? err.message : err);
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
