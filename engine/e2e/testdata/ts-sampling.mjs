// ts-sampling.mjs connects the official TypeScript SDK client
// (StreamableHTTPClientTransport, which opens the standalone GET stream after
// initialization) to an MCP server, calls its "ask" tool, answers the
// sampling request the server sends on that GET stream, and prints one JSON
// object with what it saw. The Go test (getstream_test.go) checks it.
//
// Environment:
//   MCP_URL      the MCP endpoint (required)
//   MCP_KEY      a bearer client key for the relay (optional)
//   MCP_SDK_DIR  the installed @modelcontextprotocol/sdk package (required)
import { pathToFileURL } from "node:url";
import { join } from "node:path";

const url = process.env.MCP_URL;
const key = process.env.MCP_KEY || "";
const sdk = process.env.MCP_SDK_DIR;
if (!url || !sdk) {
  console.error("MCP_URL and MCP_SDK_DIR are required");
  process.exit(2);
}
const load = (p) => import(pathToFileURL(join(sdk, "dist", "esm", p)).href);
const { Client } = await load("client/index.js");
const { StreamableHTTPClientTransport } = await load("client/streamableHttp.js");
const { CreateMessageRequestSchema } = await load("types.js");

const out = { samplingRequests: 0 };
const headers = key ? { Authorization: `Bearer ${key}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client({ name: "sluice-e2e-ts-sampling", version: "1.0.0" }, { capabilities: { sampling: {} } });
client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  out.samplingRequests++;
  const q = req.params.messages[0]?.content?.text || "";
  return { model: "ts-model", role: "assistant", content: { type: "text", text: "sampled " + q } };
});

try {
  await client.connect(transport);
  out.protocolVersion = transport.protocolVersion || "";
  const res = await client.callTool({ name: "ask", arguments: { question: "6*7?" } }, undefined, { timeout: 15000 });
  out.result = (res.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
  out.isError = !!res.isError;
  await client.close();
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.error = String(err && err.message ? err.message : err);
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
