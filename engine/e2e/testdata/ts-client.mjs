// ts-client.mjs drives an MCP server with the official TypeScript SDK client
// (StreamableHTTPClientTransport) and prints one JSON object with what it saw.
// The Go test (tsclient_test.go) runs it against the relay URL and checks it.
//
// Environment:
//   MCP_URL      the MCP endpoint (required)
//   MCP_KEY      a bearer client key for the relay (optional)
//   MCP_SDK_DIR  the installed @modelcontextprotocol/sdk package (required)
//
// Steps: initialize (declaring sampling and elicitation), list tools, call
// trigger-long-running-operation with a progress callback (recording the order
// of progress and result), call trigger-sampling-request and
// trigger-elicitation-request (answering the server's requests), call echo, and
// end the session with DELETE (transport.terminateSession()).
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
const { CreateMessageRequestSchema, ElicitRequestSchema } = await load("types.js");

const out = { events: [], serverRequests: [] };
const headers = key ? { Authorization: `Bearer ${key}` } : {};
const transport = new StreamableHTTPClientTransport(new URL(url), { requestInit: { headers } });
const client = new Client(
  { name: "sluice-e2e-ts-client", version: "1.0.0" },
  { capabilities: { sampling: {}, elicitation: { form: {} } } },
);

client.setRequestHandler(CreateMessageRequestSchema, async (req) => {
  out.serverRequests.push("sampling/createMessage");
  return {
    model: "sluice-e2e-model",
    role: "assistant",
    content: { type: "text", text: "sampled through the tunnel" },
  };
});
client.setRequestHandler(ElicitRequestSchema, async (req) => {
  out.serverRequests.push("elicitation/create");
  return { action: "accept", content: { name: "Sluice Tunnel", check: true } };
});

function text(result) {
  return (result.content || []).filter((c) => c.type === "text").map((c) => c.text).join("\n");
}

try {
  await client.connect(transport);
  out.sessionId = transport.sessionId || "";
  out.protocolVersion = transport.protocolVersion || "";
  out.serverName = client.getServerVersion()?.name || "";

  const tools = await client.listTools();
  out.tools = tools.tools.map((t) => t.name);

  const progress = [];
  const long = await client.callTool(
    { name: "trigger-long-running-operation", arguments: { duration: 1, steps: 3 } },
    undefined,
    {
      onprogress: (p) => {
        progress.push(p.progress);
        out.events.push(`progress:${p.progress}/${p.total}`);
      },
      timeout: 30000,
    },
  );
  out.events.push("result");
  out.progress = progress;
  out.longResult = text(long);

  const sampling = await client.callTool(
    { name: "trigger-sampling-request", arguments: { prompt: "hello", maxTokens: 10 } },
    undefined,
    { timeout: 30000 },
  );
  out.samplingResult = text(sampling);

  const elicit = await client.callTool(
    { name: "trigger-elicitation-request", arguments: {} },
    undefined,
    { timeout: 30000 },
  );
  out.elicitationResult = text(elicit);

  const echo = await client.callTool({ name: "echo", arguments: { message: "ünïcode ✓ 0" } });
  out.echo = text(echo);

  await transport.terminateSession();
  out.terminated = transport.sessionId === undefined;
  await client.close();
  out.ok = true;
} catch (err) {
  out.ok = false;
  out.error = String(err && err.message ? err.message : err);
  out.errorCode = err && err.code !== undefined ? err.code : null;
}
process.stdout.write(JSON.stringify(out) + "\n");
process.exit(out.ok ? 0 : 1);
