// sse.js and GatewayTransport.stream: the gateway's event streams read back into the
// replies redis-cli prints, byte for byte, however the chunks are cut.
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { eventReader } from "../../src/redis_gateway/console/sse.js";
import { GatewayTransport, ConnectionError } from "../../src/redis_gateway/console/transport.js";
import { formatReply } from "../../src/redis_gateway/console/redis-cli.js";
import { arr, bulk, int, status, binary } from "./helpers.mjs";

const enc = (text) => new TextEncoder().encode(text);

/** Every reply from the stream's bytes, fed one byte at a time and all at once. */
function read(command, names, wire) {
  const bytes = typeof wire === "string" ? enc(wire) : wire;
  const whole = eventReader(command, names.map(enc)).feed(bytes);
  const reader = eventReader(command, names.map(enc));
  const piecewise = [];
  for (const b of bytes) piecewise.push(...reader.feed(Uint8Array.of(b)));
  assert.deepEqual(piecewise, whole);
  return whole;
}

describe("events as redis-cli's replies", () => {
  test("confirmations and messages, commas and line breaks in payloads, keep-alives", () => {
    const replies = read("subscribe", ["a", "b,c"],
      "data: subscribe,a,1\n\ndata: subscribe,b,c,2\n\n: keepalive\n\n" +
      "data: message,a,how, are you\n\ndata: message,b,c,x\ndata:y\ndata:  z\n\n");
    assert.deepEqual(replies, [
      arr(bulk("subscribe"), bulk("a"), int(1)), arr(bulk("subscribe"), bulk("b,c"), int(2)),
      arr(bulk("message"), bulk("a"), bulk("how, are you")),
      arr(bulk("message"), bulk("b,c"), bulk("x\ny\n z")),
    ]);
    assert.equal(formatReply(replies[2], []), '1) "message"\n2) "a"\n3) "how, are you"\n');
  });

  test("pattern messages, bytes that are not UTF-8", () => {
    const wire = new Uint8Array([...enc("data: pmessage,n*,news,"), 0xff, 0x00, ...enc("\n\n")]);
    assert.deepEqual(read("psubscribe", ["n*"], wire),
                     [arr(bulk("pmessage"), bulk("n*"), bulk("news"), binary([0xff, 0x00]))]);
  });

  test("MONITOR: OK, then each line as a status", () => {
    assert.deepEqual(read("monitor", [], 'data: "OK"\n\ndata: 1.5 [0 1.2.3.4:5] "GET" "k"\n\n'),
                     [status("OK"), status('1.5 [0 1.2.3.4:5] "GET" "k"')]);
  });

  test("a stream the gateway ends is an error reply, and nothing after it", () => {
    const replies = read("subscribe", ["a"], "data: subscribe,a,1\n\nevent: error\n" +
                         "data: error,slow consumer,the client did not keep up\n\n" +
                         "data: message,a,late\n\n");
    assert.equal(replies.length, 2);
    assert.deepEqual(replies[1], { type: "error", value: "ERR the gateway ended the stream " +
                                   "(slow consumer: the client did not keep up)" });
  });
});

/** A fetch whose answer's body streams the given chunks, then waits for the abort. */
function streamingFetch(chunks, { status: code = 200, type = "text/event-stream" } = {}) {
  const calls = [];
  const fetch = async (url, init) => {
    calls.push({ url, ...init });
    const body = new ReadableStream({
      start(controller) {
        for (const chunk of chunks) controller.enqueue(enc(chunk));
        init.signal.addEventListener("abort", () => controller.error(new Error("aborted")));
      },
    });
    return { ok: code < 300, status: code, headers: new Headers({ "content-type": type }),
             body, text: async () => chunks.join("") };
  };
  return { fetch, calls };
}

describe("GatewayTransport.stream", () => {
  test("POSTs to the SSE path with the token, hands each reply over, stops on abort", async () => {
    const { fetch, calls } = streamingFetch(["data: subscribe,a b,1\n", "\n"]);
    const link = new GatewayTransport({ url: "http://gw:8079/", token: "t", fetch });
    const controller = new AbortController();
    const replies = [];
    const done = link.stream([enc("SUBSCRIBE"), enc("a b")], 2, (r) => {
      replies.push(r);
      controller.abort(); // Ctrl-C after the first reply
    }, controller.signal);
    await done;
    assert.deepEqual(replies, [arr(bulk("subscribe"), bulk("a b"), int(1))]);
    assert.equal(calls[0].url, "http://gw:8079/subscribe/a%20b");
    assert.equal(calls[0].headers.Authorization, "Bearer t");
    assert.equal(calls[0].headers.Accept, "text/event-stream");
  });

  test("a refusal is an error reply; arity as redis-cli; unreachable is a ConnectionError",
       async () => {
    const refused = streamingFetch(['{"error":"NOPERM no permissions to access the \'x\' channel"}'],
                                   { status: 403, type: "application/json" });
    let link = new GatewayTransport({ url: "http://gw:8079", token: "t", fetch: refused.fetch });
    const replies = [];
    await link.stream([enc("SUBSCRIBE"), enc("x")], 2, (r) => replies.push(r),
                      new AbortController().signal);
    await link.stream([enc("SUBSCRIBE")], 2, (r) => replies.push(r), new AbortController().signal);
    await link.stream([enc("MONITOR"), enc("x")], 2, (r) => replies.push(r),
                      new AbortController().signal);
    assert.deepEqual(replies.map((r) => r.value), [
      "NOPERM no permissions to access the 'x' channel",
      "ERR wrong number of arguments for 'subscribe' command",
      "ERR wrong number of arguments for 'monitor' command"]);
    link = new GatewayTransport({ url: "http://gw:8079", token: "t",
                                  fetch: async () => { throw new TypeError("fetch failed"); } });
    await assert.rejects(link.stream([enc("MONITOR")], 2, () => {}, new AbortController().signal),
                         ConnectionError);
  });
});
