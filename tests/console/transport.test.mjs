// transport.js with a recording fetch: what goes on the wire, and how answers come back.
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  GatewayTransport, AppSyncTransport, ConnectionError, addressOf, stringsToTyped, jsonToTyped,
} from "../../src/redis_gateway/console/transport.js";

/** A fetch that answers from a list and records every request. */
function fakeFetch(...answers) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init });
    const next = answers.shift();
    if (next instanceof Error) throw next;
    const [status, body, type = "application/json"] = next;
    return {
      status,
      headers: new Headers({ "content-type": type }),
      text: async () => (typeof body === "string" ? body : JSON.stringify(body)),
    };
  };
  return { fetch, calls };
}

const bytes = (...parts) => parts.map((p) => (typeof p === "string" ? new TextEncoder().encode(p)
                                                                      : Uint8Array.from(p)));

describe("addresses for the prompt", () => {
  test("host:port, with the scheme's port written out", () => {
    assert.equal(addressOf("http://127.0.0.1:8079"), "127.0.0.1:8079");
    assert.equal(addressOf("https://redis.example.com/base"), "redis.example.com:443");
    assert.equal(addressOf("http://example.com"), "example.com:80");
    assert.equal(addressOf("http://[::1]:8079/"), "[::1]:8079");
  });
});

describe("the gateway", () => {
  test("a command as JSON, with the token and the typed format", async () => {
    const { fetch, calls } = fakeFetch([200, { result: { type: "status", value: "OK" } }]);
    const link = new GatewayTransport({ url: "http://gw:8079/redis/", token: "rgw_x", fetch });
    assert.equal(link.address, "gw:8079");
    const reply = await link.command(bytes("SET", "k", "hello world"), 3);
    assert.deepEqual(reply, { type: "status", value: "OK" });
    assert.equal(calls[0].url, "http://gw:8079/redis/");
    assert.equal(calls[0].method, "POST");
    assert.equal(calls[0].body, '["SET","k","hello world"]');
    assert.deepEqual(calls[0].headers, { "Authorization": "Bearer rgw_x",
                                         "Content-Type": "application/json",
                                         "Redis-Reply-Format": "typed-resp3" });
  });

  test("bytes that are not UTF-8: path segments, and the last argument as the body", async () => {
    const { fetch, calls } = fakeFetch([200, { result: { type: "bulk", value: "x" } }],
                                       [200, { result: { type: "null" } }],
                                       [200, { result: { type: "null" } }]);
    const link = new GatewayTransport({ url: "http://gw:1", token: "t", fetch });
    await link.command(bytes("SET", [0xff, 0x2f, 0x20, 0x3f], [0x00, 0xfe]), 2);
    assert.equal(calls[0].url, "http://gw:1/SET/%FF%2F%20%3F");
    assert.deepEqual(Buffer.from(calls[0].body), Buffer.from([0x00, 0xfe]));
    assert.equal(calls[0].headers["Content-Type"], "application/octet-stream");
    await link.command(bytes("ECHO", [0xff], ""), 2); // an empty last argument stays in the path
    assert.equal(calls[1].url, "http://gw:1/ECHO/%FF/");
    assert.equal(calls[1].body, undefined);
    await link.command(bytes([0xc3]), 2);
    assert.equal(calls[2].url, "http://gw:1/%C3");
  });

  test("'.' and '..' cannot be path segments", async () => {
    const { fetch, calls } = fakeFetch();
    const link = new GatewayTransport({ url: "http://gw:1", token: "t", fetch });
    const reply = await link.command(bytes("SET", "..", [0xff]), 2);
    assert.equal(reply.type, "error");
    assert.match(reply.value, /'\.' or '\.\.'/);
    assert.equal(calls.length, 0);
  });

  test("refusals become typed errors with their status", async () => {
    const { fetch } = fakeFetch([401, { error: "invalid token: it is unknown or has been revoked" }],
                                [404, "<h1>Not Found</h1>", "text/html"], [200, { ok: true }],
                                [200, { ok: true }]);
    const link = new GatewayTransport({ url: "http://gw:1", token: "bad", fetch });
    assert.deepEqual(await link.command(bytes("PING"), 2),
                     { type: "error", value: "invalid token: it is unknown or has been revoked",
                       status: 401 });
    const notJson = await link.command(bytes("PING"), 2);
    assert.equal(notJson.status, 404);
    assert.match(notJson.value, /unexpected answer from http:\/\/gw:1\/: HTTP 404 \(text\/html\)/);
    // JSON, but not the gateway's: another server at that URL.
    assert.deepEqual(await link.command(bytes("PING"), 2), {
      type: "error", status: 200, value: "unexpected answer from http://gw:1: not a redis-gateway reply" });
    assert.equal((await link.transaction([bytes("PING")], 2)).type, "error");
  });

  test("a network failure is a ConnectionError", async () => {
    const { fetch } = fakeFetch(new TypeError("Failed to fetch"));
    const link = new GatewayTransport({ url: "http://gw:1", token: "t", fetch });
    await assert.rejects(link.command(bytes("PING"), 2),
                         (err) => err instanceof ConnectionError && err.message === "Failed to fetch");
  });

  test("a transaction goes to /multi-exec; its replies become EXEC's array", async () => {
    const items = [{ type: "status", value: "OK" }, { type: "integer", value: "2" }];
    const { fetch, calls } = fakeFetch(
      [200, items], [400, { error: "ERR nope (command 1 of the transaction; nothing was run)" }]);
    const link = new GatewayTransport({ url: "http://gw:1", token: "t", fetch });
    assert.deepEqual(await link.transaction([bytes("SET", "k", "1"), bytes("INCR", "k")], 2),
                     { type: "array", value: items });
    assert.equal(calls[0].url, "http://gw:1/multi-exec");
    assert.equal(calls[0].body, '[["SET","k","1"],["INCR","k"]]');
    assert.equal((await link.transaction([bytes("X")], 2)).status, 400);
    const binary = await link.transaction([bytes("SET", "k", [0xff])], 2);
    assert.match(binary.value, /only UTF-8/);
    assert.equal(calls.length, 2);
  });

  test("COMMAND DOCS, always as RESP3", async () => {
    const { fetch, calls } = fakeFetch([200, { result: { type: "map", value: [] } }]);
    const link = new GatewayTransport({ url: "http://gw:1", token: "t", fetch });
    assert.deepEqual(await link.docs(), { type: "map", value: [] });
    assert.equal(calls[0].body, '["COMMAND","DOCS"]');
    assert.equal(calls[0].headers["Redis-Reply-Format"], "typed-resp3");
  });
});

describe("AppSync", () => {
  test("a command is the sample page's getRedis query, with x-api-key", async () => {
    const { fetch, calls } = fakeFetch([200, { data: { getRedis: ["hello world"] } }]);
    const link = new AppSyncTransport({ url: "https://x.appsync-api.eu-west-1.amazonaws.com/graphql",
                                        apiKey: "da2-key", fetch });
    assert.equal(link.address, "x.appsync-api.eu-west-1.amazonaws.com:443");
    assert.deepEqual(await link.command(bytes("GET", 'a "quoted" \\ key')),
                     { type: "bulk", value: "hello world" });
    assert.equal(calls[0].headers["x-api-key"], "da2-key");
    assert.deepEqual(JSON.parse(calls[0].body),
                     { query: 'query { getRedis(Command: ["GET","a \\"quoted\\" \\\\ key"]) }' });
  });

  test("getRedis answers: one string is a value, several a list", () => {
    assert.deepEqual(stringsToTyped(["a"]), { type: "bulk", value: "a" });
    assert.deepEqual(stringsToTyped([null]), { type: "null" });
    assert.deepEqual(stringsToTyped(["a", null]),
                     { type: "array", value: [{ type: "bulk", value: "a" }, { type: "null" }] });
    assert.deepEqual(stringsToTyped([]), { type: "array", value: [] });
    assert.deepEqual(stringsToTyped(null), { type: "null" });
  });

  test("a write refused in a Query is sent again as putRedis", async () => {
    const refused = { data: { getRedis: null }, errors: [{
      message: "'set' may write, and this request runs read-only commands only (a GraphQL " +
               "Query); send it in a Mutation", errorType: "BadRequest" }] };
    const { fetch, calls } = fakeFetch([200, refused], [200, { data: { putRedis: '["OK"]' } }]);
    const link = new AppSyncTransport({ url: "http://gw:1/graphql", apiKey: "k", fetch });
    assert.deepEqual(await link.command(bytes("SET", "k", "v")), { type: "bulk", value: "OK" });
    assert.deepEqual(JSON.parse(calls[1].body),
                     { query: 'mutation { putRedis(Command: [["SET","k","v"]]) }' });
  });

  test("other GraphQL errors are errors", async () => {
    const { fetch } = fakeFetch(
      [200, { data: { getRedis: null }, errors: [{ message: "ERR unknown command 'NOPE'" }] }],
      [401, { errors: [{ errorType: "UnauthorizedException",
                         message: "You are not authorized to make this call." }] }]);
    const link = new AppSyncTransport({ url: "http://gw:1/graphql", apiKey: "k", fetch });
    assert.deepEqual(await link.command(bytes("NOPE")),
                     { type: "error", value: "ERR unknown command 'NOPE'", status: 200 });
    assert.deepEqual(await link.command(bytes("PING")),
                     { type: "error", value: "You are not authorized to make this call.",
                       status: 401 });
  });

  test("a transaction is putRedis; its JSON text keeps numbers, nesting and errors", async () => {
    const { fetch, calls } = fakeFetch(
      [200, { data: { putRedis: '["OK", 2, null, ["a", ["b"]], {"error": "WRONGTYPE x"}]' } }],
      [200, { data: { putRedis: "[OK, 2]" } }]);
    const link = new AppSyncTransport({ url: "http://gw:1/graphql", apiKey: "k", fetch });
    assert.deepEqual(await link.transaction([bytes("SET", "k", "1"), bytes("INCR", "k")]), {
      type: "array", value: [
        { type: "bulk", value: "OK" }, { type: "integer", value: "2" }, { type: "null" },
        { type: "array", value: [{ type: "bulk", value: "a" },
                                 { type: "array", value: [{ type: "bulk", value: "b" }] }] },
        { type: "error", value: "WRONGTYPE x" }] });
    assert.deepEqual(JSON.parse(calls[0].body),
                     { query: 'mutation { putRedis(Command: [["SET","k","1"],["INCR","k"]]) }' });
    // The sample's own Lambda answers Python's text of a list: shown as it came.
    assert.deepEqual(await link.transaction([bytes("PING")]), { type: "status", value: "[OK, 2]" });
  });

  test("binary arguments cannot travel as GraphQL strings", async () => {
    const { fetch, calls } = fakeFetch();
    const link = new AppSyncTransport({ url: "http://gw:1/graphql", apiKey: "k", fetch });
    assert.match((await link.command(bytes("GET", [0xff]))).value, /UTF-8/);
    assert.match((await link.transaction([bytes("GET", [0xff])])).value, /UTF-8/);
    assert.equal(calls.length, 0);
  });

  test("putRedis JSON values to typed values", () => {
    assert.deepEqual(jsonToTyped(-3), { type: "integer", value: "-3" });
    assert.deepEqual(jsonToTyped(undefined), { type: "null" });
  });
});
