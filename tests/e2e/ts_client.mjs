// A real TypeScript SDK client: connects over Streamable HTTP, lists the
// tools, calls `<prefix>echo`, and exits non-zero on any mismatch.
//
// usage: node ts_client.mjs URL TOOL_PREFIX MESSAGE
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, prefix, message] = process.argv.slice(2);
if (!url || prefix === undefined || !message) {
  console.error("usage: node ts_client.mjs URL TOOL_PREFIX MESSAGE");
  process.exit(2);
}

function fail(what) {
  console.error(`ts_client: ${what}`);
  process.exit(1);
}

const client = new Client({ name: "palisade-e2e-ts", version: "0.0.0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);

// Every page: a gateway may list each upstream's tools on a page of its own.
const names = [];
let cursor;
for (let page = 0; ; page++) {
  if (page === 100) fail("tools/list never stopped paginating");
  const listed = await client.listTools(cursor === undefined ? {} : { cursor });
  names.push(...listed.tools.map((t) => t.name));
  cursor = listed.nextCursor;
  if (cursor === undefined) break;
}
const echo = `${prefix}echo`;
if (!names.includes(echo)) fail(`tools/list has no \`${echo}\`: ${JSON.stringify(names)}`);

const result = await client.callTool({ name: echo, arguments: { message } });
const text = result.content?.[0]?.text;
if (result.isError) fail(`echo returned a tool error: ${JSON.stringify(result)}`);
if (text !== `Echo: ${message}`) fail(`echo answered ${JSON.stringify(text)}`);

await transport.terminateSession().catch(() => {});
await client.close();
// One JSON line on stdout so the caller can check what was seen, not just the exit code.
console.log(JSON.stringify({ tools: names.length, echo: text }));
