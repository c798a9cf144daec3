// help.js: the help table from COMMAND DOCS, hints and completion. The expected hints and
// completions are what the real redis-cli 7.0.15 showed for the same input.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  entriesFromDocs, synopsis, hint, completions, helpText, typedToPlain,
} from "../../src/redis_gateway/console/help.js";
import { splitArgs, bytesToText } from "../../src/redis_gateway/console/redis-cli.js";

const captured = JSON.parse(readFileSync(new URL("fixtures/captured.json", import.meta.url)));
const entries = entriesFromDocs(captured.docs.resp3);

/** The hint for a typed line, as the console computes it. */
function hintFor(line) {
  const args = splitArgs(line);
  return args && hint(entries, args.map(bytesToText), /[ \t\n\v\f\r]$/.test(line));
}

const SET_PARAMS = "key value [NX|XX] [GET] [EX seconds|PX milliseconds|" +
  "EXAT unix-time-seconds|PXAT unix-time-milliseconds|KEEPTTL]";

describe("the help table", () => {
  test("RESP2 (flat lists) and RESP3 (maps) COMMAND DOCS give the same table", () => {
    assert.deepEqual(entriesFromDocs(captured.docs.resp2), entries);
    // Plain JSON works too (what AppSync's putRedis answers).
    assert.deepEqual(entriesFromDocs(typedToPlain(captured.docs.resp2)), entries);
  });

  test("commands and subcommands, sorted by name", () => {
    const names = entries.map((e) => e.name);
    assert.deepEqual(names, [...names].sort());
    assert.ok(names.includes("CONFIG") && names.includes("CONFIG GET"));
    const set = entries.find((e) => e.name === "SET");
    assert.deepEqual(set, { name: "SET", argv: ["set"], params: SET_PARAMS,
                            summary: "Set the string value of a key", since: "1.0.0",
                            group: "string" });
    assert.deepEqual(entries.find((e) => e.name === "CONFIG GET").argv, ["config", "get"]);
  });

  test("argument synopses: blocks, one-ofs, tokens, optional and multiple", () => {
    assert.equal(synopsis({ name: "key", type: "key" }), "key");
    assert.equal(synopsis({ name: "nx", type: "pure-token", token: "NX", flags: ["optional"] }), "[NX]");
    assert.equal(synopsis({ name: "key", type: "key", flags: ["multiple"] }), "key [key ...]");
    assert.equal(synopsis({ name: "key", type: "key", flags: ["optional", "multiple"] }),
                 "[key [key ...]]");
    assert.equal(synopsis({ name: "pattern", type: "pattern", token: "GET",
                            flags: ["optional", "multiple", "multiple_token"] }),
                 "[GET pattern [GET pattern ...]]");
    assert.equal(synopsis({ name: "limit", type: "block", token: "LIMIT", flags: ["optional"],
                            arguments: [{ name: "offset", type: "integer" },
                                        { name: "count", type: "integer" }] }),
                 "[LIMIT offset count]");
    assert.equal(synopsis(["name", "empty_string", "type", "pure-token", "token", ""]), '""');
    assert.match(entries.find((e) => e.name === "MIGRATE").params, /^host port key\|"" /);
  });
});

describe("hints", () => {
  test("as redis-cli 7.0.15 shows them", () => {
    assert.equal(hintFor("set"), " " + SET_PARAMS);
    assert.equal(hintFor("set "), SET_PARAMS);
    assert.equal(hintFor("SET"), " " + SET_PARAMS);
    assert.equal(hintFor("set k"), " " + SET_PARAMS.slice(4));
    assert.equal(hintFor("set k "), SET_PARAMS.slice(4));
    assert.equal(hintFor('set "k k" '), SET_PARAMS.slice(4));
    const options = SET_PARAMS.slice(SET_PARAMS.indexOf("["));
    assert.equal(hintFor("set k v "), options);
    assert.equal(hintFor("set k v ex"), " " + options); // stops at the first optional one
    assert.equal(hintFor("SET k v EX 10 "), options);
    assert.equal(hintFor("config get"), " parameter [parameter ...]");
    assert.equal(hintFor("config get "), "parameter [parameter ...]");
    assert.equal(hintFor("CONFIG  GET "), "parameter [parameter ...]");
    assert.equal(hintFor("config get x"), " [parameter ...]");
    assert.equal(hintFor("config"), " ");
    assert.equal(hintFor("config "), "");
    assert.equal(hintFor("get k extra "), "");
    assert.equal(hintFor("get k extra"), " ");
    assert.equal(hintFor("xadd "), "key [NOMKSTREAM] [MAXLEN|MINID [=|~] threshold [LIMIT count]] " +
                                   "*|id field value [field value ...]");
    assert.equal(hintFor("zadd k "), "[NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]");
    assert.equal(hintFor("zadd k 1 "), "[NX|XX] [GT|LT] [CH] [INCR] score member [score member ...]");
    assert.equal(hintFor("hello "), "[protover [AUTH username password] [SETNAME clientname]]");
    assert.equal(hintFor("mset "), "key value [key value ...]");
    assert.equal(hintFor("mset k v k2 v2 "), "[key value ...]");
  });

  test("no hint for unknown commands, help, empty lines or a line that does not split", () => {
    for (const line of ["foo", "x", "help set", "", "  ", 'set k "v']) {
      assert.equal(hintFor(line), null, line);
    }
  });
});

describe("completion", () => {
  test("command names in upper case, cycling in order", () => {
    assert.deepEqual(completions(entries, "se"), ["SET"]);
    assert.deepEqual(completions(entries, "SE"), ["SET"]);
    assert.deepEqual(completions(entries, "pf"), ["PFADD", "PFCOUNT", "PFDEBUG", "PFMERGE",
                                                  "PFSELFTEST"]);
    assert.deepEqual(completions(entries, "config g"), ["CONFIG GET"]);
    assert.deepEqual(completions(entries, "xyz"), []);
    assert.deepEqual(completions(entries, "").length, entries.length);
  });

  test('after "help ", commands and @groups', () => {
    assert.deepEqual(completions(entries, "help @hy"), ["help @hyperloglog"]);
    assert.deepEqual(completions(entries, "help  pfm"), ["help  PFMERGE"]);
    assert.ok(completions(entries, "help @").includes("help @string"));
    assert.deepEqual(completions(entries, "@hy"), []); // groups only after help
  });
});

describe("help text", () => {
  test("help alone", () => {
    const text = helpText(entries, []);
    assert.match(text, /^redis-gateway console \(redis-cli 7\.0 compatible\)\n/);
    assert.match(text, /"help @<group>" to get a list of commands in <group>/);
    assert.match(text, /":set nohints" disable online hints/);
  });

  test("a command, a command's subcommands, a group, nothing", () => {
    assert.equal(helpText(entries, ["set"]),
                 `\n  SET ${SET_PARAMS}\n  summary: Set the string value of a key\n` +
                 "  since: 1.0.0\n  group: string\n\n");
    const config = helpText(entries, ["CONFIG"]);
    assert.match(config, /^\n {2}CONFIG \n/);
    assert.match(config, /\n {2}CONFIG GET parameter \[parameter \.\.\.\]\n/);
    const group = helpText(entries, ["@hyperloglog"]);
    assert.match(group, /\n {2}PFSELFTEST \n {2}summary: .*\n {2}since: 2\.8\.9\n\n$/);
    assert.doesNotMatch(group, /group:/);
    assert.equal(helpText(entries, ["nosuch"]), "\n");
    assert.equal(helpText(entries, ["@nosuch"]), "\n");
  });
});
