// Runs the console's modules for tests/test_console.py, which compares their output with
// the real redis-cli. Reads JSON on stdin, writes JSON on stdout.
//   node bridge.mjs format            [{reply, argv}]           -> [text]
//   node bridge.mjs repl URL TOKEN P  [line]                    -> [text printed for each]
//   node bridge.mjs help              {docs, topics: [[word]]}   -> [text]
import { formatReply } from "../../src/redis_gateway/console/redis-cli.js";
import { entriesFromDocs, helpText } from "../../src/redis_gateway/console/help.js";
import { Session } from "../../src/redis_gateway/console/session.js";
import { GatewayTransport } from "../../src/redis_gateway/console/transport.js";

async function stdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return JSON.parse(Buffer.concat(chunks).toString("utf8"));
}

async function repl(url, token, protocol, lines) {
  const session = new Session({ transport: new GatewayTransport({ url, token }),
                                protocol: Number(protocol) });
  await session.loadDocs();
  const outputs = [];
  for (const line of lines) {
    let text = "";
    await session.execute(line, {
      write: (t) => { text += t; }, remember() {}, clear() {}, exit() {}, connect() {},
    });
    outputs.push(text);
  }
  return outputs;
}

const [mode, ...args] = process.argv.slice(2);
const input = await stdin();
let output;
if (mode === "format") output = input.map(({ reply, argv }) => formatReply(reply, argv));
else if (mode === "repl") output = await repl(...args, input);
else if (mode === "help") {
  const entries = entriesFromDocs(input.docs);
  output = input.topics.map((topic) => helpText(entries, topic));
} else throw new Error(`unknown mode ${mode}`);
process.stdout.write(JSON.stringify(output));
