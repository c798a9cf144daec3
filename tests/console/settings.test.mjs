// settings.js: where the token, the settings and the history are kept.
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  KEYS, loadConnection, saveConnection, forgetToken, History,
} from "../../src/redis_gateway/console/settings.js";

/** A Storage (getItem/setItem/removeItem) over a Map. */
function memory() {
  const data = new Map();
  return { data, getItem: (k) => (data.has(k) ? data.get(k) : null),
           setItem: (k, v) => data.set(k, String(v)), removeItem: (k) => data.delete(k) };
}

const conn = (more) => ({ mode: "gateway", url: "http://gw:1", protocol: 2, remember: false,
                          token: "rgw_secret", ...more });

describe("the token", () => {
  test("in session storage only, unless remembered", () => {
    const [local, tab] = [memory(), memory()];
    saveConnection(local, tab, conn());
    assert.equal(tab.getItem(KEYS.token), "rgw_secret");
    assert.equal(local.getItem(KEYS.token), null);
    assert.doesNotMatch(local.getItem(KEYS.connection), /rgw_secret/);
    assert.deepEqual(loadConnection(local, tab), conn());

    saveConnection(local, tab, conn({ remember: true }));
    assert.equal(local.getItem(KEYS.token), "rgw_secret");
    assert.equal(tab.getItem(KEYS.token), null);
    assert.deepEqual(loadConnection(local, memory()), conn({ remember: true })); // a new tab

    saveConnection(local, tab, conn({ remember: false }));
    assert.equal(local.getItem(KEYS.token), null); // unticking forgets it
    assert.equal(tab.getItem(KEYS.token), "rgw_secret");
  });

  test("forgetting it, and saving an empty one", () => {
    const [local, tab] = [memory(), memory()];
    saveConnection(local, tab, conn({ remember: true }));
    forgetToken(local, tab);
    assert.equal(loadConnection(local, tab).token, "");
    saveConnection(local, tab, conn({ token: "" }));
    assert.equal(tab.getItem(KEYS.token), null);
  });

  test("defaults, and settings that are not what they should be", () => {
    assert.deepEqual(loadConnection(memory(), memory()),
                     { mode: "gateway", url: "", protocol: 2, remember: false, token: "" });
    const local = memory();
    local.setItem(KEYS.connection, "{not json");
    assert.equal(loadConnection(local, memory()).mode, "gateway");
    local.setItem(KEYS.connection, JSON.stringify({ mode: "appsync", url: "https://a/graphql",
                                                    protocol: 3, remember: "yes" }));
    assert.deepEqual(loadConnection(local, memory()),
                     { mode: "appsync", url: "https://a/graphql", protocol: 3, remember: false,
                       token: "" });
  });
});

describe("the history", () => {
  test("kept in storage, no repeats of the last line, at most 100 lines", () => {
    const local = memory();
    const history = new History(local);
    for (const line of ["PING", "PING", "GET k", "PING", ""]) history.add(line);
    assert.deepEqual(history.lines, ["PING", "GET k", "PING"]);
    assert.deepEqual(new History(local).lines, ["PING", "GET k", "PING"]); // after a reload
    for (let i = 0; i < 150; i++) history.add(`SET k ${i}`);
    assert.equal(history.lines.length, 100);
    assert.equal(history.lines[99], "SET k 149");
    assert.equal(new History(local, 10).lines.length, 10);
  });

  test("up and down, keeping the line being typed", () => {
    const history = new History(memory());
    ["one", "two", "three"].forEach((l) => history.add(l));
    assert.equal(history.previous("draft"), "three");
    assert.equal(history.previous("three"), "two");
    assert.equal(history.previous("two"), "one");
    assert.equal(history.previous("one"), null);
    assert.equal(history.next(), "two");
    assert.equal(history.next(), "three");
    assert.equal(history.next(), "draft");
    assert.equal(history.next(), null);
    history.add("four");
    assert.equal(history.previous(""), "four");
  });

  test("a broken or full storage does not break it", () => {
    const local = memory();
    local.setItem(KEYS.history, '{"not": "a list"}');
    const history = new History(local);
    assert.deepEqual(history.lines, []);
    local.setItem = () => { throw new Error("QuotaExceededError"); };
    history.add("PING");
    assert.deepEqual(history.lines, ["PING"]);
  });
});
