// Replies captured from a real redis-server through the gateway (RESP2 and RESP3), with
// what the real redis-cli printed for each; regenerate with
// RG_CAPTURE_CONSOLE_FIXTURES=1 pytest tests/test_console.py (see there).
import { test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { formatReply } from "../../src/redis_gateway/console/redis-cli.js";
import { entriesFromDocs, helpText } from "../../src/redis_gateway/console/help.js";

const captured = JSON.parse(readFileSync(new URL("fixtures/captured.json", import.meta.url)));

test("the captured cases cover both protocols and every reply type", () => {
  const types = new Set();
  const walk = (r) => {
    types.add(r.type);
    if (r.type === "map") r.value.forEach(([k, v]) => { walk(k); walk(v); });
    else if (Array.isArray(r.value)) r.value.forEach(walk);
  };
  captured.replies.forEach((c) => walk(c.reply));
  for (const type of ["status", "error", "integer", "bulk", "null", "array", "map", "set",
                      "double", "boolean", "bignumber", "verbatim"]) {
    assert.ok(types.has(type), type);
  }
  assert.deepEqual(new Set(captured.replies.map((c) => c.protocol)), new Set([2, 3]));
});

for (const { protocol, argv, reply, redis_cli: expected } of captured.replies) {
  test(`RESP${protocol} ${argv.join(" ").slice(0, 60)}`, () => {
    assert.equal(formatReply(reply, argv), expected);
  });
}

for (const protocol of [2, 3]) {
  test(`help from a RESP${protocol} COMMAND DOCS, as redis-cli prints it`, () => {
    const entries = entriesFromDocs(captured.docs[`resp${protocol}`]);
    for (const { topic, redis_cli: expected } of captured.help) {
      assert.equal(helpText(entries, topic), expected, topic.join(" "));
    }
  });
}
