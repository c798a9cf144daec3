// session.js: the REPL with a fake transport: local commands, MULTI/EXEC, repeats, timing,
// streaming commands, an unreachable gateway, help without COMMAND DOCS.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import { Session } from "../../src/redis_gateway/console/session.js";
import { ConnectionError } from "../../src/redis_gateway/console/transport.js";
import { status, int, arr, bulk, error } from "./helpers.mjs";

const captured = JSON.parse(readFileSync(new URL("fixtures/captured.json", import.meta.url)));
const text = (args) => args.map((a) => Buffer.from(a).toString());

/** A transport that answers from a function and records what it was sent. */
function fakeTransport(answer = () => status("OK")) {
  const sent = [];
  return {
    sent,
    address: "gw:8079",
    async command(args, protocol) {
      sent.push({ args: text(args), protocol });
      return answer(text(args));
    },
    async transaction(commands, protocol) {
      sent.push({ transaction: commands.map(text), protocol });
      return arr(...commands.map((c) => answer(text(c))));
    },
    async docs() {
      return captured.docs.resp3;
    },
  };
}

/** Runs lines; returns what was printed and what the page was asked to do. */
async function run(session, ...lines) {
  const page = { printed: "", remembered: [], cleared: 0, exited: 0, connected: [] };
  for (const line of lines) {
    await session.execute(line, {
      write: (t) => { page.printed += t; },
      remember: (l) => page.remembered.push(l),
      clear: () => page.cleared++,
      exit: () => page.exited++,
      connect: (host, port) => page.connected.push([host, port]),
    });
  }
  return page;
}

describe("sending", () => {
  test("commands go as split, in the session's protocol, replies formatted", async () => {
    const link = fakeTransport(() => bulk("hello world"));
    const session = new Session({ transport: link, protocol: 3 });
    const page = await run(session, 'GET "my key"');
    assert.equal(page.printed, '"hello world"\n');
    assert.deepEqual(link.sent, [{ args: ["GET", "my key"], protocol: 3 }]);
    assert.deepEqual(page.remembered, ['GET "my key"']);
  });

  test("a repeat sends N times and prints each reply", async () => {
    let n = 0;
    const link = fakeTransport(() => int(++n));
    const page = await run(new Session({ transport: link }), "3 INCR x");
    assert.equal(page.printed, "(integer) 1\n(integer) 2\n(integer) 3\n");
    assert.equal(link.sent.length, 3);
  });

  test("cancel() stops a repeat after the reply being waited for", async () => {
    let session;
    let n = 0;
    const link = fakeTransport(() => {
      if (++n === 2) session.cancel();
      return status("PONG");
    });
    session = new Session({ transport: link });
    const page = await run(session, "1000 PING");
    assert.equal(page.printed, "PONG\nPONG\n");
  });

  test("INFO is printed raw", async () => {
    const link = fakeTransport(() => bulk("# Server\r\nredis_version:7\r\n"));
    assert.equal((await run(new Session({ transport: link }), "info server")).printed,
                 "# Server\r\nredis_version:7\r\n");
  });

  test("the time a command took, from 500 ms", async () => {
    let clock = 0;
    const link = fakeTransport(() => { clock += 1020; return status("OK"); });
    const session = new Session({ transport: link, now: () => clock });
    assert.equal((await run(session, "BLPOP k 1")).printed, "OK\n(1.02s)\n");
    clock = 0;
    const quick = fakeTransport(() => { clock += 499; return status("OK"); });
    assert.equal((await run(new Session({ transport: quick, now: () => clock }), "PING")).printed,
                 "OK\n");
  });

  test("parse errors and bad repeats send nothing", async () => {
    const link = fakeTransport();
    const page = await run(new Session({ transport: link }), 'SET k "v', "0 PING", "", "  ");
    assert.equal(page.printed, "Invalid argument(s)\nInvalid redis-cli repeat command option value.\n");
    assert.deepEqual(link.sent, []);
    assert.deepEqual(page.remembered, ['SET k "v']);
  });

  test("passwords stay out of the history", async () => {
    const page = await run(new Session({ transport: fakeTransport() }), "AUTH secret", "PING");
    assert.deepEqual(page.remembered, ["PING"]);
  });
});

describe("local commands", () => {
  test("clear, exit, connect, :set, restart", async () => {
    const link = fakeTransport();
    const session = new Session({ transport: link });
    const page = await run(session, "clear", "connect example.com 6380", ":set nohints",
                           "restart", ":set x", "exit");
    assert.equal(page.cleared, 1);
    assert.deepEqual(page.connected, [["example.com", "6380"]]);
    assert.equal(session.hintsOn, false);
    assert.equal(page.printed, "Use 'restart' only in Lua debugging mode.\n" +
                               "unknown redis-cli preference 'x'\n");
    assert.equal(page.exited, 1);
    assert.deepEqual(link.sent, []);
  });

  test("help uses COMMAND DOCS, and says so when it could not be read", async () => {
    const session = new Session({ transport: fakeTransport() });
    assert.match((await run(session, "help set")).printed,
                 /No help available: COMMAND DOCS did not answer \(not connected\)/);
    assert.equal(await session.loadDocs(), true);
    assert.match((await run(session, "help set")).printed, /^\n {2}SET key value/);
    assert.match((await run(session, "help")).printed, /^redis-gateway console/);

    const refused = fakeTransport();
    refused.docs = async () => error("NOPERM this token has no permissions to run the " +
                                     "'command|docs' command");
    const without = new Session({ transport: refused });
    assert.equal(await without.loadDocs(), false);
    assert.match(without.docsProblem, /NOPERM/);
    assert.match((await run(without, "help get")).printed, /No help available: .*NOPERM/);
    assert.match((await run(without, "help")).printed, /^redis-gateway console/);
    assert.equal(without.hint("get "), null);
  });

  test("hints follow :set hints / nohints", async () => {
    const session = new Session({ transport: fakeTransport() });
    await session.loadDocs();
    assert.equal(session.hint("get "), "key");
    await run(session, ":set nohints");
    assert.equal(session.hint("get "), null);
    await run(session, ":set hints");
    assert.equal(session.hint("get "), "key");
    assert.deepEqual(session.completions("pfc"), ["PFCOUNT"]);
  });

  test("SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE and MONITOR say so over a transport that cannot stream", async () => {
    const link = fakeTransport();
    link.name = "the GraphQL endpoint";
    const page = await run(new Session({ transport: link }), "subscribe news", "PSUBSCRIBE n*",
                           "ssubscribe s", "monitor");
    for (const name of ["SUBSCRIBE", "PSUBSCRIBE", "SSUBSCRIBE", "MONITOR"]) {
      assert.match(page.printed, new RegExp(`^${name} streams its replies, and the GraphQL endpoint cannot stream them: this is not available here\\.$`, "m"));
    }
    assert.deepEqual(link.sent, []);
  });

  /** A transport whose stream() pushes the given replies, then waits for the abort. */
  function streamingTransport(replies) {
    const link = fakeTransport();
    link.streams = [];
    link.stream = async (args, protocol, onReply, signal) => {
      link.streams.push({ args: text(args), protocol });
      for (const reply of replies) onReply(reply);
      if (!signal.aborted) {
        await new Promise((resolve) => signal.addEventListener("abort", resolve, { once: true }));
      }
      link.aborted = true;
    };
    return link;
  }

  test("SUBSCRIBE prints the banner and every message as redis-cli does, until Ctrl-C", async () => {
    const link = streamingTransport([arr(bulk("subscribe"), bulk("news"), int(1)),
                                     arr(bulk("message"), bulk("news"), bulk("hello world"))]);
    const session = new Session({ transport: link });
    const page = { printed: "" };
    const out = { write: (t) => { page.printed += t; }, remember() {} };
    const running = session.execute("SUBSCRIBE news", out);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(page.printed, "Reading messages... (press Ctrl-C to quit)\n" +
                 '1) "subscribe"\n2) "news"\n3) (integer) 1\n' +
                 '1) "message"\n2) "news"\n3) "hello world"\n');
    session.cancel(); // Ctrl-C
    await running;
    assert.equal(link.aborted, true);
    assert.deepEqual(link.streams, [{ args: ["SUBSCRIBE", "news"], protocol: 2 }]);
    // The console is usable again.
    assert.equal((await run(session, "PING")).printed, "OK\n");
  });

  test("MONITOR has no banner; an error reply ends the stream as in redis-cli", async () => {
    const link = streamingTransport([status("OK"), status('1.5 [0 127.0.0.1:5] "GET" "k"')]);
    const session = new Session({ transport: link });
    const out = { printed: "", write(t) { this.printed += t; }, remember() {} };
    const running = session.execute("monitor", out);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(out.printed, 'OK\n1.5 [0 127.0.0.1:5] "GET" "k"\n');
    session.cancel();
    await running;
    const refused = streamingTransport([error("NOPERM this user has no permissions to access " +
                                              "the 'x' channel")]);
    const page = await run(new Session({ transport: refused }), "subscribe x");
    assert.equal(page.printed, "Reading messages... (press Ctrl-C to quit)\n(error) NOPERM " +
                 "this user has no permissions to access the 'x' channel\n");
  });

  test("SUBSCRIBE inside MULTI is queued, as Redis does", async () => {
    const link = streamingTransport([]);
    const page = await run(new Session({ transport: link }), "MULTI", "SUBSCRIBE a");
    assert.equal(page.printed, "OK\nQUEUED\n");
    assert.deepEqual(link.streams, []);
  });
});

describe("MULTI / EXEC", () => {
  test("commands are queued and sent together on EXEC; the prompt shows (TX)", async () => {
    const link = fakeTransport((args) => (args[0] === "INCR" ? int(1) : status("OK")));
    const session = new Session({ transport: link });
    assert.equal(session.prompt, "gw:8079> ");
    let page = await run(session, "MULTI");
    assert.equal(page.printed, "OK\n");
    assert.equal(session.prompt, "gw:8079(TX)> ");
    page = await run(session, "SET k 1", "2 INCR k");
    assert.equal(page.printed, "QUEUED\nQUEUED\nQUEUED\n");
    assert.deepEqual(link.sent, []);
    page = await run(session, "EXEC");
    assert.equal(page.printed, "1) OK\n2) (integer) 1\n3) (integer) 1\n");
    assert.deepEqual(link.sent, [{ transaction: [["SET", "k", "1"], ["INCR", "k"], ["INCR", "k"]],
                                   protocol: 2 }]);
    assert.equal(session.prompt, "gw:8079> ");
  });

  test("DISCARD drops the queue; EXEC and DISCARD without MULTI are errors", async () => {
    const link = fakeTransport();
    const session = new Session({ transport: link });
    const page = await run(session, "MULTI", "SET k 1", "DISCARD", "EXEC", "discard");
    assert.equal(page.printed, "OK\nQUEUED\nOK\n(error) ERR EXEC without MULTI\n" +
                               "(error) ERR DISCARD without MULTI\n");
    assert.deepEqual(link.sent, []);
    assert.equal(session.inTransaction, false);
  });

  test("an empty transaction, nesting, WATCH, and arity errors that abort EXEC", async () => {
    const link = fakeTransport();
    const session = new Session({ transport: link });
    let page = await run(session, "MULTI", "EXEC");
    assert.equal(page.printed, "OK\n(empty array)\n");
    page = await run(session, "MULTI", "MULTI", "WATCH k", "PING", "EXEC");
    assert.equal(page.printed, "OK\n(error) ERR MULTI calls can not be nested\n" +
                               "(error) ERR WATCH inside MULTI is not allowed\nQUEUED\n1) OK\n");
    page = await run(session, "MULTI x", "MULTI", "PING", "EXEC x", "EXEC");
    assert.equal(page.printed,
                 "(error) ERR wrong number of arguments for 'multi' command\nOK\nQUEUED\n" +
                 "(error) ERR wrong number of arguments for 'exec' command\n" +
                 "(error) EXECABORT Transaction discarded because of previous errors.\n");
    assert.equal(link.sent.length, 1);
  });

  test("a transaction the gateway refuses prints its error and ends", async () => {
    const link = fakeTransport();
    const refusal = "ERR unknown command 'NOPE' (command 1 of the transaction; nothing was run)";
    link.transaction = async () => ({ type: "error", status: 400, value: refusal });
    const session = new Session({ transport: link });
    const page = await run(session, "MULTI", "NOPE", "EXEC");
    assert.ok(page.printed.endsWith(`(error) ${refusal}\n`));
    assert.equal(session.inTransaction, false);
  });

  test("exit leaves the transaction", async () => {
    const session = new Session({ transport: fakeTransport() });
    await run(session, "MULTI", "exit");
    assert.equal(session.inTransaction, false);
  });
});

describe("connection", () => {
  test("not connected without a transport", async () => {
    const session = new Session();
    assert.equal(session.prompt, "not connected> ");
    assert.equal((await run(session, "PING")).printed,
                 "Not connected: fill in the connection settings first.\n");
  });

  test("an unreachable gateway: a message and 'not connected> ' until one gets through", async () => {
    let down = true;
    const link = fakeTransport(() => {
      if (down) throw new ConnectionError("Failed to fetch");
      return status("PONG");
    });
    const session = new Session({ transport: link });
    assert.equal((await run(session, "3 PING")).printed,
                 "Could not connect to redis-gateway at gw:8079: Failed to fetch\n");
    assert.equal(link.sent.length, 1);
    assert.equal(session.prompt, "not connected> ");
    down = false;
    assert.equal((await run(session, "PING")).printed, "PONG\n");
    assert.equal(session.prompt, "gw:8079> ");
  });

  test("check(): a PING that is not printed", async () => {
    const ok = new Session({ transport: fakeTransport(() => status("PONG")) });
    assert.equal(await ok.check(), null);
    const refused = new Session({ transport: fakeTransport(() => ({ type: "error", status: 401,
                                                                   value: "invalid token" })) });
    assert.deepEqual(await refused.check(), { type: "error", status: 401, value: "invalid token" });
    const down = new Session({ transport: fakeTransport(() => { throw new ConnectionError("refused"); }) });
    assert.deepEqual(await down.check(),
                     { type: "error", value: "Could not connect to redis-gateway at gw:8079: refused" });
    assert.equal(down.prompt, "not connected> ");
  });
});
