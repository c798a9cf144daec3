// The real @upstash/redis SDK, with its default options (base64 responseEncoding,
// automatic pipelining, readYourWrites, automatic deserialization), against redis-gateway.
//
// Needs UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN (tests/test_sdk_js.py sets them).
// The Redis behind the gateway is shared with other tests: every key lives under a unique
// per-run prefix and is removed with DEL afterwards; nothing here flushes a database.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Redis, errors } from "@upstash/redis";

const url = process.env.UPSTASH_REDIS_REST_URL;
const token = process.env.UPSTASH_REDIS_REST_TOKEN;
if (!url || !token) {
  throw new Error("UPSTASH_REDIS_REST_URL and UPSTASH_REDIS_REST_TOKEN must be set");
}

const { UpstashError } = errors;
// The run's id is a hash tag, so that on a Redis Cluster every key of a run shares a slot
// (MGET and the final DEL take several keys).
const prefix = `js:{${Date.now()}:${process.pid}}:`;
const created = new Set();

/** A key under this run's prefix, remembered for the final DEL. */
function key(name) {
  const k = prefix + name;
  created.add(k);
  return k;
}

function client(options = {}) {
  return new Redis({ url, token, enableTelemetry: false, ...options });
}

// The client under test: default options apart from telemetry.
const redis = client();

/** Asserts that `promise` rejects with an UpstashError whose message contains `text`. */
async function rejectsWith(promise, text) {
  await assert.rejects(promise, (err) => {
    assert.ok(err instanceof UpstashError, `expected an UpstashError, got ${err?.name}: ${err?.message}`);
    assert.ok(err.message.includes(text), `error message ${JSON.stringify(err.message)} lacks ${JSON.stringify(text)}`);
    return true;
  });
}

before(async () => {
  assert.equal(await redis.ping(), "PONG");
});

after(async () => {
  const keys = [...created];
  for (let i = 0; i < keys.length; i += 100) {
    await redis.del(...keys.slice(i, i + 100));
  }
  const left = await Promise.all(keys.map((k) => redis.exists(k)));
  assert.deepEqual(left.filter((n) => n !== 0), [], "every key of this run is deleted");
});

describe("strings", () => {
  test("set with ex and nx, get, ttl", async () => {
    const k = key("str:ex");
    assert.equal(await redis.set(k, "hello", { ex: 100 }), "OK");
    assert.equal(await redis.get(k), "hello");
    const ttl = await redis.ttl(k);
    assert.ok(ttl > 0 && ttl <= 100, `ttl ${ttl}`);

    // NX on an existing key does nothing and answers null
    assert.equal(await redis.set(k, "other", { nx: true }), null);
    assert.equal(await redis.get(k), "hello");
    const fresh = key("str:nx");
    assert.equal(await redis.set(fresh, "first", { nx: true }), "OK");
    assert.equal(await redis.get(fresh), "first");

    assert.equal(await redis.get(key("str:missing")), null);
  });

  test("mget keeps order and nulls", async () => {
    const a = key("str:mget:a");
    const b = key("str:mget:b");
    await redis.set(a, "alpha");
    await redis.set(b, "beta");
    assert.deepEqual(await redis.mget(a, key("str:mget:none"), b), ["alpha", null, "beta"]);
  });

  test("incr, incrby, decr and incrbyfloat", async () => {
    const k = key("str:counter");
    assert.equal(await redis.incr(k), 1);
    assert.equal(await redis.incr(k), 2);
    assert.equal(await redis.incrby(k, 40), 42);
    assert.equal(await redis.decr(k), 41);
    // the stored string is read back and deserialized as a number
    assert.equal(await redis.get(k), 41);

    const f = key("str:float");
    assert.equal(await redis.incrbyfloat(f, 1.5), 1.5);
    assert.equal(await redis.incrbyfloat(f, 0.25), 1.75);
    assert.equal(await redis.incrbyfloat(f, -3), -1.25);
  });

  test("append, strlen and getrange", async () => {
    const k = key("str:append");
    assert.equal(await redis.append(k, "Hello"), 5);
    assert.equal(await redis.append(k, ", World"), 12);
    assert.equal(await redis.get(k), "Hello, World");
    assert.equal(await redis.strlen(k), 12);
    assert.equal(await redis.getrange(k, 0, 4), "Hello");
    assert.equal(await redis.getrange(k, -5, -1), "World");
  });

  test("unicode values and keys round-trip through base64", async () => {
    const values = {
      "uni:emoji": "grüße 🚀 日本語 — ñ",
      "uni:cjk": "你好，世界",
      "uni:rtl": "مرحبا بالعالم",
      "uni:combining": "e\u0301 a\u030A",
      "uni:ключ🔑": "значение",
    };
    for (const [name, value] of Object.entries(values)) {
      const k = key(name);
      assert.equal(await redis.set(k, value), "OK");
      assert.equal(await redis.get(k), value);
    }
    const k = key("uni:emoji");
    // STRLEN counts bytes: the value went over the wire as UTF-8
    assert.equal(await redis.strlen(k), Buffer.byteLength(values["uni:emoji"], "utf8"));
    assert.equal(await redis.append(k, "✓"), Buffer.byteLength(values["uni:emoji"] + "✓", "utf8"));
    assert.equal(await redis.get(k), values["uni:emoji"] + "✓");
  });

  test("strings that look like base64 or JSON keep their meaning", async () => {
    const k = key("str:b64like");
    await redis.set(k, "YmFy"); // "bar" in base64: must come back as the literal text
    assert.equal(await redis.get(k), "YmFy");
    const ok = key("str:ok");
    await redis.set(ok, "OK");
    assert.equal(await redis.get(ok), "OK");
    const empty = key("str:empty");
    await redis.set(empty, "");
    assert.equal(await redis.get(empty), "");
  });
});

describe("hashes", () => {
  test("hset, hget, hgetall, hincrby, hdel, hkeys, hlen", async () => {
    const k = key("hash");
    assert.equal(await redis.hset(k, { name: "Ada", lang: "日本語", visits: 1 }), 3);
    assert.equal(await redis.hget(k, "name"), "Ada");
    assert.equal(await redis.hget(k, "lang"), "日本語");
    assert.equal(await redis.hget(k, "visits"), 1);
    assert.equal(await redis.hget(k, "nope"), null);

    assert.equal(await redis.hincrby(k, "visits", 41), 42);
    assert.deepEqual(await redis.hgetall(k), { name: "Ada", lang: "日本語", visits: 42 });

    assert.deepEqual((await redis.hkeys(k)).sort(), ["lang", "name", "visits"]);
    assert.equal(await redis.hlen(k), 3);
    assert.equal(await redis.hdel(k, "lang", "nope"), 1);
    assert.deepEqual((await redis.hkeys(k)).sort(), ["name", "visits"]);
    assert.equal(await redis.hexists(k, "lang"), 0);

    assert.equal(await redis.hgetall(key("hash:missing")), null);
  });
});

describe("lists", () => {
  test("lpush, rpush, lrange, lpop, rpop, llen", async () => {
    const k = key("list");
    assert.equal(await redis.rpush(k, "b", "c"), 2);
    assert.equal(await redis.lpush(k, "a"), 3);
    assert.equal(await redis.rpush(k, "d", "ë"), 5);
    assert.deepEqual(await redis.lrange(k, 0, -1), ["a", "b", "c", "d", "ë"]);
    assert.deepEqual(await redis.lrange(k, 1, 2), ["b", "c"]);
    assert.equal(await redis.llen(k), 5);
    assert.equal(await redis.lpop(k), "a");
    assert.deepEqual(await redis.lpop(k, 2), ["b", "c"]);
    assert.equal(await redis.rpop(k), "ë");
    assert.equal(await redis.llen(k), 1);
    assert.equal(await redis.lpop(k), "d");
    assert.equal(await redis.lpop(k), null);
    assert.equal(await redis.llen(k), 0);
  });
});

describe("sets", () => {
  test("sadd, smembers, sismember, srem, scard", async () => {
    const k = key("set");
    assert.equal(await redis.sadd(k, "red", "green", "blue"), 3);
    assert.equal(await redis.sadd(k, "red", "ünïcode"), 1);
    assert.deepEqual((await redis.smembers(k)).sort(), ["blue", "green", "red", "ünïcode"].sort());
    assert.equal(await redis.sismember(k, "green"), 1);
    assert.equal(await redis.sismember(k, "purple"), 0);
    assert.equal(await redis.scard(k), 4);
    assert.equal(await redis.srem(k, "green", "purple"), 1);
    assert.equal(await redis.scard(k), 3);
    assert.deepEqual((await redis.smembers(k)).sort(), ["blue", "red", "ünïcode"].sort());
  });
});

describe("sorted sets", () => {
  test("zadd, zrange withScores, zscore, zincrby, zrank, zrem", async () => {
    const k = key("zset");
    assert.equal(
      await redis.zadd(k, { score: 1, member: "one" }, { score: 2.5, member: "two" }, { score: 3, member: "drei" }),
      3,
    );
    assert.equal(await redis.zcard(k), 3);
    assert.deepEqual(await redis.zrange(k, 0, -1), ["one", "two", "drei"]);
    assert.deepEqual(await redis.zrange(k, 0, -1, { withScores: true }), ["one", 1, "two", 2.5, "drei", 3]);
    assert.deepEqual(await redis.zrange(k, 0, 0, { rev: true, withScores: true }), ["drei", 3]);

    assert.equal(await redis.zscore(k, "two"), 2.5);
    assert.equal(await redis.zscore(k, "missing"), null);
    assert.equal(await redis.zincrby(k, 10, "one"), 11);
    assert.equal(await redis.zrank(k, "one"), 2);
    assert.equal(await redis.zrank(k, "two"), 0);
    assert.equal(await redis.zrank(k, "missing"), null);

    assert.equal(await redis.zrem(k, "two", "missing"), 1);
    assert.deepEqual(await redis.zrange(k, 0, -1, { withScores: true }), ["drei", 3, "one", 11]);
  });

  test("unicode members", async () => {
    const k = key("zset:uni");
    await redis.zadd(k, { score: 1, member: "ä" }, { score: 2, member: "🚀" });
    assert.deepEqual(await redis.zrange(k, 0, -1), ["ä", "🚀"]);
    assert.equal(await redis.zscore(k, "🚀"), 2);
  });
});

describe("streams", () => {
  test("xadd, xlen, xrange, xrevrange", async () => {
    const k = key("stream");
    const id1 = await redis.xadd(k, "*", { sensor: "a", temp: 20 });
    const id2 = await redis.xadd(k, "*", { sensor: "b", temp: 21.5, note: "größer" });
    assert.match(id1, /^\d+-\d+$/);
    assert.match(id2, /^\d+-\d+$/);
    assert.notEqual(id1, id2);
    const id3 = await redis.xadd(k, "9999999999999-0", { sensor: "c" });
    assert.equal(id3, "9999999999999-0");
    assert.equal(await redis.xlen(k), 3);

    const all = await redis.xrange(k, "-", "+");
    assert.deepEqual(Object.keys(all), [id1, id2, id3]);
    assert.deepEqual(all[id1], { sensor: "a", temp: 20 });
    assert.deepEqual(all[id2], { sensor: "b", temp: 21.5, note: "größer" });
    assert.deepEqual(all[id3], { sensor: "c" });

    assert.deepEqual(await redis.xrange(k, "-", "+", 1), { [id1]: { sensor: "a", temp: 20 } });
    const rev = await redis.xrevrange(k, "+", "-", 2);
    assert.deepEqual(Object.keys(rev).sort(), [id2, id3].sort());
    assert.deepEqual(rev[id3], { sensor: "c" });
  });
});

describe("scripts", () => {
  test("eval with keys and args", async () => {
    const k = key("script:eval");
    const script = "redis.call('SET', KEYS[1], ARGV[1]); return {redis.call('GET', KEYS[1]), ARGV[2], 7}";
    assert.deepEqual(await redis.eval(script, [k], ["from-lua", "ünï"]), ["from-lua", "ünï", 7]);
    assert.equal(await redis.get(k), "from-lua");
  });

  test("scriptLoad then evalsha", async () => {
    const k = key("script:sha");
    const script = "return redis.call('INCRBY', KEYS[1], ARGV[1])";
    const sha = await redis.scriptLoad(script);
    assert.match(sha, /^[0-9a-f]{40}$/);
    assert.deepEqual(await redis.scriptExists(sha), [1]);
    assert.equal(await redis.evalsha(sha, [k], [5]), 5);
    assert.equal(await redis.evalsha(sha, [k], [10]), 15);
  });

  test("evalsha with an unknown sha rejects with NOSCRIPT", async () => {
    await rejectsWith(redis.evalsha("0".repeat(40), [], []), "NOSCRIPT");
  });
});

describe("pipeline and transaction", () => {
  test("redis.pipeline() ... exec()", async () => {
    const k = key("pipe:str");
    const h = key("pipe:hash");
    const p = redis.pipeline();
    p.set(k, "v1").get(k).incr(key("pipe:n")).hset(h, { f: "x" }).hget(h, "f").mget(k, key("pipe:none"));
    assert.equal(p.length(), 6);
    assert.deepEqual(await p.exec(), ["OK", "v1", 1, 1, "x", ["v1", null]]);
  });

  test("a failing command inside a pipeline", async () => {
    const k = key("pipe:err");
    await redis.set(k, "not-a-number");
    // default: exec rejects naming the failing command
    const p = redis.pipeline();
    p.get(k).incr(k);
    await rejectsWith(p.exec(), "ERR value is not an integer or out of range");

    // keepErrors: every item comes back with its own result or error
    const q = redis.pipeline();
    q.get(k).incr(k).set(k, "after");
    const res = await q.exec({ keepErrors: true });
    assert.equal(res.length, 3);
    assert.deepEqual(res[0], { error: undefined, result: "not-a-number" });
    assert.match(res[1].error, /ERR value is not an integer or out of range/);
    assert.equal(res[2].result, "OK");
    assert.equal(await redis.get(k), "after");
  });

  test("redis.multi() ... exec()", async () => {
    const k = key("multi:n");
    const l = key("multi:list");
    const tx = redis.multi();
    tx.incr(k).incrby(k, 9).rpush(l, "a", "b").lrange(l, 0, -1).get(k);
    assert.deepEqual(await tx.exec(), [1, 10, 2, ["a", "b"], 10]);
  });

  test("a run-time error inside multi does not stop the others", async () => {
    const k = key("multi:err");
    await redis.set(k, "text");
    const tx = redis.multi();
    tx.incr(k).set(k, "done");
    const res = await tx.exec({ keepErrors: true });
    assert.match(res[0].error, /ERR value is not an integer or out of range/);
    assert.equal(res[1].result, "OK");
    assert.equal(await redis.get(k), "done");
  });
});

describe("automatic pipelining", () => {
  test("concurrent commands are batched and each gets its own answer", async () => {
    const n = 50;
    const keys = Array.from({ length: n }, (_, i) => key(`auto:${i}`));
    const before = redis.pipelineCounter;
    const sets = await Promise.all(keys.map((k, i) => redis.set(k, `value-${i}-ü`)));
    assert.deepEqual(sets, Array(n).fill("OK"));
    assert.equal(redis.pipelineCounter - before, 1, "50 concurrent SETs went out as one pipeline");

    const mid = redis.pipelineCounter;
    const [gets, incrs, len] = await Promise.all([
      Promise.all(keys.map((k) => redis.get(k))),
      Promise.all(keys.map(() => redis.incr(key("auto:counter")))),
      redis.strlen(keys[0]),
    ]);
    assert.deepEqual(gets, keys.map((_, i) => `value-${i}-ü`));
    assert.deepEqual(incrs, Array.from({ length: n }, (_, i) => i + 1));
    assert.equal(len, Buffer.byteLength("value-0-ü"));
    // reads and writes are separate batches
    assert.ok(redis.pipelineCounter - mid <= 2, `batches: ${redis.pipelineCounter - mid}`);
  });

  test("one failing command in a batch rejects alone", async () => {
    const bad = key("auto:bad");
    const good = key("auto:good");
    await redis.set(bad, "abc");
    const results = await Promise.allSettled([redis.incr(good), redis.incr(bad), redis.incr(good)]);
    assert.deepEqual(results[0], { status: "fulfilled", value: 1 });
    assert.equal(results[1].status, "rejected");
    assert.ok(results[1].reason instanceof UpstashError);
    assert.match(results[1].reason.message, /ERR value is not an integer or out of range/);
    assert.deepEqual(results[2], { status: "fulfilled", value: 2 });
  });
});

describe("automatic deserialization", () => {
  test("JSON objects, arrays and scalars", async () => {
    const k = key("json:obj");
    const value = { name: "Zoë", tags: ["a", "b"], nested: { n: 1, ok: true, none: null }, pi: 3.14 };
    assert.equal(await redis.set(k, value), "OK");
    assert.deepEqual(await redis.get(k), value);

    const arr = key("json:arr");
    await redis.set(arr, [1, "two", { three: 3 }]);
    assert.deepEqual(await redis.get(arr), [1, "two", { three: 3 }]);

    const num = key("json:num");
    await redis.set(num, 12345);
    assert.equal(await redis.get(num), 12345);
    const bool = key("json:bool");
    await redis.set(bool, true);
    assert.equal(await redis.get(bool), true);

    const h = key("json:hash");
    await redis.hset(h, { profile: { age: 36, langs: ["js"] }, plain: "text" });
    assert.deepEqual(await redis.hget(h, "profile"), { age: 36, langs: ["js"] });
    assert.deepEqual(await redis.hgetall(h), { profile: { age: 36, langs: ["js"] }, plain: "text" });

    // the raw stored text is the JSON form
    const raw = client({ automaticDeserialization: false });
    assert.equal(await raw.get(k), JSON.stringify(value));
  });
});

describe("errors", () => {
  test("incr on a non-integer rejects with Redis's text (auto-pipelined)", async () => {
    const k = key("err:notint");
    await redis.set(k, "hello");
    await rejectsWith(redis.incr(k), "ERR value is not an integer or out of range");
    assert.equal(await redis.get(k), "hello");
  });

  test("wrong type rejects with WRONGTYPE", async () => {
    const k = key("err:wrongtype");
    await redis.rpush(k, "x");
    await rejectsWith(redis.get(k), "WRONGTYPE");
    await rejectsWith(redis.hgetall(k), "WRONGTYPE"); // hgetall skips auto-pipelining: POST /
  });

  test("without auto-pipelining the single-command route reports the same errors", async () => {
    const single = client({ enableAutoPipelining: false });
    const k = key("err:single");
    assert.equal(await single.set(k, "nope"), "OK");
    assert.equal(await single.get(k), "nope");
    await rejectsWith(single.incr(k), "ERR value is not an integer or out of range");
    await rejectsWith(single.zadd(k, { score: 1, member: "m" }), "WRONGTYPE");
  });

  test("a bad token is rejected", async () => {
    const bad = new Redis({ url, token: "not-a-valid-token", enableTelemetry: false, retry: false });
    await assert.rejects(bad.get(key("err:auth")), UpstashError);
  });
});

describe("read your writes", () => {
  test("the sync token changes after a write, a pipeline, a transaction and eval", async () => {
    const rw = client();
    const k = key("ryw");
    // the first request gets the client a token
    await rw.get(k);
    const t0 = rw.readYourWritesSyncToken;
    assert.equal(typeof t0, "string");
    assert.ok(t0.length > 0, "the gateway sends a non-empty upstash-sync-token");

    await rw.set(k, "1");
    const t1 = rw.readYourWritesSyncToken;
    assert.ok(t1.length > 0);
    assert.notEqual(t1, t0, "token changes after SET");

    const p = rw.pipeline();
    p.set(k, "2").get(k);
    assert.deepEqual(await p.exec(), ["OK", 2]);
    const t2 = rw.readYourWritesSyncToken;
    assert.notEqual(t2, t1, "token changes after a pipeline");

    const tx = rw.multi();
    tx.set(k, "3").get(k);
    assert.deepEqual(await tx.exec(), ["OK", 3]);
    const t3 = rw.readYourWritesSyncToken;
    assert.notEqual(t3, t2, "token changes after multi-exec");

    assert.equal(await rw.eval("return redis.call('SET', KEYS[1], ARGV[1])", [k], ["4"]), "OK");
    const t4 = rw.readYourWritesSyncToken;
    assert.notEqual(t4, t3, "token changes after EVAL");
    assert.equal(await rw.get(k), 4);
  });

  test("a client with readYourWrites off still works", async () => {
    const plain = client({ readYourWrites: false });
    const k = key("ryw:off");
    await plain.set(k, "x");
    assert.equal(await plain.get(k), "x");
    assert.equal(plain.readYourWritesSyncToken, "");
  });
});
