// redis-cli.js against every rule of ../shared/specs/redis-cli-rules.md (section numbers
// below are the spec's), plus what the real redis-cli 7.0.15 does where the spec is silent.
import { describe, test } from "node:test";
import assert from "node:assert/strict";

import {
  splitArgs, strtol, interpret, isSensitive, formatReply, isRawCommand, quoteBytes,
  formatPrompt, formatElapsed,
} from "../../src/redis_gateway/console/redis-cli.js";
import {
  status, error, int, bulk, binary, nil, nilArray, double, bool, verbatim, big, arr, set, push,
  map, buffers, B,
} from "./helpers.mjs";

const split = (line) => buffers(splitArgs(line));
const tty = (reply) => formatReply(reply);

describe("1. splitting a line", () => {
  test("the spec's table", () => {
    assert.deepEqual(split('SET k "hello world"'), B("SET", "k", "hello world"));
    assert.deepEqual(split('ECHO "a\\"b\\\\c"'), B("ECHO", 'a"b\\c'));
    assert.deepEqual(split('ECHO "\\x00\\xff"'), [Buffer.from("ECHO"), Buffer.from([0, 0xff])]);
    assert.deepEqual(split("ECHO 'it\\'s'"), B("ECHO", "it's"));
    assert.deepEqual(split("ECHO 'a\\nb'"), B("ECHO", "a\\nb"));
    assert.equal(split("ECHO 'a\\nb'")[1].length, 4);
    assert.deepEqual(split('ECHO ""'), B("ECHO", ""));
    assert.deepEqual(split("ECHO é"), [Buffer.from("ECHO"), Buffer.from([0xc3, 0xa9])]);
    assert.equal(split('ECHO "x"y'), null);
    assert.equal(split('ECHO "open'), null);
  });

  test("1.1 whitespace between arguments, and lines with nothing in them", () => {
    assert.deepEqual(split(" \t\n\v\f\rGET \v\f k\r\n"), B("GET", "k"));
    assert.deepEqual(split(""), []);
    assert.deepEqual(split(" \t\v\f\r\n "), []);
  });

  test("1.2 unquoted text: \\v and \\f do not end it, backslashes are literal", () => {
    assert.deepEqual(split("a\vb c\fd"), B("a\vb", "c\fd"));
    assert.deepEqual(split("a\\ b"), B("a\\", "b"));
    assert.deepEqual(split("\\x41"), B("\\x41"));
    assert.deepEqual(split("a\tb\nc\rd"), B("a", "b", "c", "d"));
  });

  test("1.3 a quote starts a quoted section inside the current argument", () => {
    assert.deepEqual(split('foo"bar baz"'), B("foobar baz"));
    assert.deepEqual(split("pre'mid dle'"), B("premid dle"));
  });

  test("1.4 double-quote escapes", () => {
    assert.deepEqual(split('"\\x41\\x4a\\x4A\\x7e"'), B("AJJ~"));
    assert.deepEqual(split('"\\n\\r\\t\\b\\a"'), B("\n\r\t\b\x07"));
    assert.deepEqual(split('"\\"\\\\\\\'\\q"'), B("\"\\'q"));
    assert.deepEqual(split('"\\xZZ"'), B("xZZ"));
    assert.deepEqual(split('"\\x4"'), B("x4"));
    assert.deepEqual(split('"\\X41"'), B("X41"));
    assert.deepEqual(split('"\\x4g1"'), B("x4g1"));
  });

  test("1.5 single quotes: only \\' is an escape", () => {
    assert.deepEqual(split("'a\\\\b'"), B("a\\\\b"));
    assert.deepEqual(split("'a\\n'"), B("a\\n"));
    assert.deepEqual(split("'\\x41 \"q\"'"), B('\\x41 "q"'));
  });

  test("1.6 a closing quote must be followed by whitespace or the end", () => {
    for (const line of ['"foo"bar', '"a""b"', "'a'\"b\"", "a'b c'd"]) {
      assert.equal(split(line), null, line);
    }
    assert.deepEqual(split('"a"\v"b"\f\'c\''), B("a", "b", "c"));
  });

  test("1.7 a quote left open is an error, also when the last quote is escaped", () => {
    for (const line of ['"abc', "'abc", '"abc\\"', "'abc\\'", 'x "\\']) {
      assert.equal(split(line), null, line);
    }
  });

  test("1.8 empty quotes give an empty argument", () => {
    assert.deepEqual(split("'' \"\""), B("", ""));
  });

  test("bytes: typed text is UTF-8, a Uint8Array is taken as it is, NUL ends the line", () => {
    assert.deepEqual(split("SET € 1"), [Buffer.from("SET"), Buffer.from([0xe2, 0x82, 0xac]),
                                        Buffer.from("1")]);
    assert.deepEqual(split(new Uint8Array([0x61, 0x20, 0xff])), [Buffer.from("a"), Buffer.from([0xff])]);
    assert.deepEqual(split("GET a\0 b"), B("GET", "a"));
  });

  test("a parse error prints Invalid argument(s) and sends nothing", () => {
    assert.deepEqual(interpret(splitArgs('"x"y')),
                     { kind: "print", text: "Invalid argument(s)\n", history: true });
    assert.deepEqual(interpret(splitArgs("   ")), { kind: "empty", history: false });
  });
});

describe("2. the REPL before sending", () => {
  const run = (line) => interpret(splitArgs(line));
  const sent = (line) => {
    const action = run(line);
    return action.kind === "send" ? [buffers(action.args), action.repeat] : action;
  };
  const invalidRepeat = { kind: "print", text: "Invalid redis-cli repeat command option value.\n",
                          history: false };

  test("2.1 repeat counts, strtol style", () => {
    assert.deepEqual(sent("3 INCR x"), [B("INCR", "x"), 3]);
    assert.deepEqual(sent("+2 PING"), [B("PING"), 2]);
    assert.deepEqual(sent('" 2" PING'), [B("PING"), 2]);
    assert.deepEqual(sent('"\t\n2" PING'), [B("PING"), 2]);
    assert.deepEqual(run('"" PING'), invalidRepeat);
    assert.deepEqual(run("0 PING"), invalidRepeat);
    assert.deepEqual(run("-1 PING"), invalidRepeat);
    assert.deepEqual(run("9223372036854775808 PING"), invalidRepeat); // out of 64-bit range
    assert.deepEqual(run("-9223372036854775809 PING"), invalidRepeat);
    assert.deepEqual(sent("9223372036854775807 PING")[0], B("PING"));
    assert.deepEqual(sent("0x10 PING"), [B("0x10", "PING"), 1]);
    assert.deepEqual(sent("3"), [B("3"), 1]);
    assert.deepEqual(sent('"2 " PING'), [B("2 ", "PING"), 1]);
    assert.deepEqual(sent('"  " PING'), [B("  ", "PING"), 1]);
    assert.deepEqual(sent("+ PING"), [B("+", "PING"), 1]);
  });

  test("strtol on its own", () => {
    assert.deepEqual(strtol(""), { whole: true, value: 0n, overflow: false });
    assert.deepEqual(strtol(" -12"), { whole: true, value: -12n, overflow: false });
    assert.equal(strtol("12a").whole, false);
    assert.equal(strtol("99999999999999999999").overflow, true);
  });

  test("2.2 quit and exit end the session, whatever follows", () => {
    for (const line of ["quit", "EXIT", "exit foo"]) assert.equal(run(line).kind, "exit");
  });

  test("2.2 preferences", () => {
    assert.deepEqual(run(":set hints"), { kind: "hints", on: true, history: true });
    assert.deepEqual(run(":SET NOHINTS"), { kind: "hints", on: false, history: true });
    assert.equal(run(":set foo").text, "unknown redis-cli preference 'foo'\n");
    assert.equal(run(":set").text, "unknown redis-cli internal command ':set'\n");
    assert.equal(run(":SET").text, "unknown redis-cli internal command ':SET'\n");
    assert.equal(run(":foo bar").text, "unknown redis-cli internal command ':foo'\n");
  });

  test("2.2 restart, connect, clear, help", () => {
    assert.equal(run("restart").text, "Use 'restart' only in Lua debugging mode.\n");
    assert.equal(run("RESTART now").text, "Use 'restart' only in Lua debugging mode.\n");
    assert.deepEqual(run("connect example.com 8080"),
                     { kind: "connect", host: "example.com", port: "8080", history: true });
    assert.equal(run("clear").kind, "clear");
    assert.deepEqual(run("help"), { kind: "help", topic: [], history: true });
    assert.deepEqual(run("HELP set ex"), { kind: "help", topic: ["set", "ex"], history: true });
    assert.deepEqual(run("? get"), { kind: "help", topic: ["get"], history: true });
  });

  test("2.2 as in redis-cli 7.0.15, only help is recognised after a repeat count", () => {
    // Checked against the real binary: "2 :set foo", "2 restart", "2 clear" and "3 exit"
    // are sent to the server (an unknown-command error each time); "2 help" prints help once.
    assert.deepEqual(sent("2 :set foo"), [B(":set", "foo"), 2]);
    assert.deepEqual(sent("2 restart"), [B("restart"), 2]);
    assert.deepEqual(sent("2 clear"), [B("clear"), 2]);
    assert.deepEqual(sent("3 exit"), [B("exit"), 3]);
    assert.deepEqual(run("2 help set"), { kind: "help", topic: ["set"], history: true });
  });

  test("2.2 connect needs exactly two arguments and clear none; else they are sent", () => {
    assert.deepEqual(sent("connect a"), [B("connect", "a"), 1]);
    assert.deepEqual(sent("clear x"), [B("clear", "x"), 1]);
    assert.deepEqual(sent("CLEAR x"), [B("CLEAR", "x"), 1]);
  });

  test("2.3 everything else is sent exactly as split, case kept", () => {
    assert.deepEqual(sent('sEt "k 1" \'v\''), [B("sEt", "k 1", "v"), 1]);
  });

  test("the history keeps every line but empty ones, bad repeats and passwords", () => {
    assert.equal(run('"x"y').history, true);
    assert.equal(run("PING").history, true);
    assert.equal(run("0 PING").history, false);
    for (const line of ["AUTH pw", "3 auth u pw", "acl setuser bob on >pw",
                        "CONFIG SET requirepass x", "config set masterauth x",
                        "HELLO 3 AUTH u pw", "HELLO 3 SETNAME n AUTH u pw",
                        "MIGRATE h 1 k 0 10 AUTH pw", "MIGRATE h 1 \"\" 0 10 AUTH2 u pw KEYS a"]) {
      assert.equal(run(line).history, false, line);
    }
    for (const line of ["HELLO 3", "HELLO 3 SETNAME auth", "CONFIG SET maxmemory 1",
                        "MIGRATE h 1 \"\" 0 10 KEYS auth x", "ACL WHOAMI"]) {
      assert.equal(run(line).history, true, line);
    }
    assert.equal(isSensitive(B("auth")), true);
  });
});

describe("3.1 scalars", () => {
  test("status, error, integer, nil, boolean", () => {
    assert.equal(tty(status("OK")), "OK\n");
    assert.equal(tty(status("with \"quotes\" \\ and é")), "with \"quotes\" \\ and é\n");
    assert.equal(tty(error("ERR x")), "(error) ERR x\n");
    assert.equal(tty(error("WRONGTYPE Operation against a key")),
                 "(error) WRONGTYPE Operation against a key\n");
    assert.equal(tty(error("NOSCRIPT No matching script")), "(error) NOSCRIPT No matching script\n");
    assert.equal(tty(error("ERR unknown command 'FOOé', with args beginning with: 'x' ")),
                 "(error) ERR unknown command 'FOOé', with args beginning with: 'x' \n");
    assert.equal(tty(int(42)), "(integer) 42\n");
    assert.equal(tty(int(-2)), "(integer) -2\n");
    assert.equal(tty(int("9223372036854775807")), "(integer) 9223372036854775807\n");
    assert.equal(tty(nil), "(nil)\n");
    assert.equal(tty(nilArray), "(nil)\n");
    assert.equal(tty(bool(true)), "(true)\n");
    assert.equal(tty(bool(false)), "(false)\n");
  });

  test("doubles keep the server's exact text", () => {
    for (const text of ["1.5", "3", "0.10000000000000001", "1e+20", "inf", "-inf", "-0",
                        "3.1400000000000001"]) {
      assert.equal(tty(double(text)), `(double) ${text}\n`);
    }
  });

  test("verbatim strings print raw, lines not indented", () => {
    assert.equal(tty(verbatim("hello world")), "hello world\n");
    assert.equal(tty(verbatim("a\nb\r\n")), "a\nb\r\n\n");
    assert.equal(tty(verbatim("")), "\n");
    assert.equal(tty(arr(int(1), verbatim("x\ny"))), "1) (integer) 1\n2) x\ny\n");
  });
});

describe("3.2 bulk string quoting", () => {
  test("every byte", () => {
    assert.equal(tty(bulk('a\\b"c\nd\re\tf\x07g\bh')), '"a\\\\b\\"c\\nd\\re\\tf\\ag\\bh"\n');
    assert.equal(tty(bulk(" ~")), '" ~"\n');
    assert.equal(tty(bulk("é")), '"\\xc3\\xa9"\n');
    assert.equal(tty(bulk("€")), '"\\xe2\\x82\\xac"\n');
    assert.equal(tty(bulk("\v\f\x00\x1f\x7f")), '"\\x0b\\x0c\\x00\\x1f\\x7f"\n');
    assert.equal(tty(bulk("")), '""\n');
    assert.equal(tty(binary([0xff, 0x00, 0x41])), '"\\xff\\x00A"\n');
  });

  test("all 256 bytes", () => {
    const all = Uint8Array.from({ length: 256 }, (_, i) => i);
    const quoted = quoteBytes(all);
    const named = { 0x5c: "\\\\", 0x22: '\\"', 0x0a: "\\n", 0x0d: "\\r", 0x09: "\\t",
                    0x07: "\\a", 0x08: "\\b" };
    let expected = '"';
    for (let b = 0; b < 256; b++) {
      expected += named[b] ?? (b >= 0x20 && b <= 0x7e ? String.fromCharCode(b)
        : "\\x" + b.toString(16).padStart(2, "0"));
    }
    assert.equal(quoted, expected + '"');
    assert.match(quoted, /\\xff"$/); // lower-case hex
  });
});

describe("3.3 aggregates", () => {
  const strings = (n, from = 1) => Array.from({ length: n }, (_, i) => bulk(`item${i + from}`));

  test("empty aggregates", () => {
    assert.equal(tty(arr()), "(empty array)\n");
    assert.equal(tty(set()), "(empty set)\n");
    assert.equal(tty(map()), "(empty hash)\n");
    assert.equal(tty(push()), "(empty push)\n");
  });

  test("markers: separators and widths for 9, 12 and 105 entries", () => {
    assert.equal(tty(arr(...strings(9))).split("\n")[8], '9) "item9"');
    const twelve = tty(arr(...strings(12))).split("\n");
    assert.equal(twelve[0], ' 1) "item1"');
    assert.equal(twelve[11], '12) "item12"');
    const many = tty(arr(...strings(105))).split("\n");
    assert.equal(many[0], '  1) "item1"');
    assert.equal(many[9], ' 10) "item10"');
    assert.equal(many[104], '105) "item105"');
    assert.equal(tty(set(bulk("a"), bulk("b"))), '1~ "a"\n2~ "b"\n');
    assert.equal(tty(push(bulk("a"))), '1) "a"\n');
    assert.equal(tty(map([bulk("f1"), bulk("v1")], [bulk("f2"), bulk("v2")])),
                 '1# "f1" => "v1"\n2# "f2" => "v2"\n');
    // A map's width counts pairs: 10 pairs are " 1#" … "10#".
    const tenPairs = map(...Array.from({ length: 10 }, (_, i) => [bulk(`k${i}`), int(i)]));
    assert.equal(tty(tenPairs).split("\n")[9], '10# "k9" => (integer) 9');
  });

  test("the LRANGE of 10 elements", () => {
    assert.equal(tty(arr(...strings(10))),
                 Array.from({ length: 10 }, (_, i) => `${String(i + 1).padStart(2)}) "item${i + 1}"`)
                   .join("\n") + "\n");
  });

  test("XRANGE under RESP2", () => {
    const reply = arr(arr(bulk("1-1"), arr(bulk("f"), bulk("v"))),
                      arr(bulk("2-0"), arr(bulk("name"), bulk("x y"))));
    assert.equal(tty(reply), [
      '1) 1) "1-1"',
      '   2) 1) "f"',
      '      2) "v"',
      '2) 1) "2-0"',
      '   2) 1) "name"',
      '      2) "x y"',
      ""].join("\n"));
  });

  test("a child wider than its parent", () => {
    const reply = arr(bulk("0"), arr(...Array.from({ length: 12 }, (_, i) => bulk(String(i + 1)))));
    const lines = tty(reply).split("\n");
    assert.equal(lines[0], '1) "0"');
    assert.equal(lines[1], '2)  1) "1"');
    assert.equal(lines[2], '    2) "2"');
    assert.equal(lines[12], '   12) "12"');
  });

  test("map values on their own lines when multi-line, with the trailing space", () => {
    const entry = arr(arr(bulk("1-1"), arr(bulk("f"), bulk("v"))));
    assert.equal(tty(map([bulk("st"), entry])), [
      '1# "st" => ',
      '   1) 1) "1-1"',
      '      2) 1) "f"',
      '         2) "v"',
      ""].join("\n"));
    const pairs = Array.from({ length: 10 }, (_, i) => [bulk(i === 0 ? "first-entry" : `e${i}`),
                                                         arr(bulk("1-1"), arr(bulk("f"), bulk("v")))]);
    const lines = tty(map(...pairs)).split("\n");
    assert.deepEqual(lines.slice(0, 5), [
      ' 1# "first-entry" => ', '    1) "1-1"', '    2) 1) "f"', '       2) "v"',
      ' 2# "e1" => ']);
    assert.equal(lines[36], '10# "e9" => ');
  });

  test("what is multi-line", () => {
    const k = bulk("k");
    assert.equal(tty(map([k, arr(int(1))])), '1# "k" => 1) (integer) 1\n');
    assert.equal(tty(map([k, map([bulk("x"), bulk("y")])])), '1# "k" => 1# "x" => "y"\n');
    assert.equal(tty(map([k, map()])), '1# "k" => (empty hash)\n');
    assert.equal(tty(map([k, arr()])), '1# "k" => (empty array)\n');
    assert.equal(tty(map([k, set(bulk("a"), bulk("b"))])), '1# "k" => \n   1~ "a"\n   2~ "b"\n');
    assert.equal(tty(map([k, arr(arr(int(1), int(2)))])),
                 '1# "k" => \n   1) 1) (integer) 1\n      2) (integer) 2\n');
    assert.equal(tty(map([k, arr(arr(int(1)))])), '1# "k" => 1) 1) (integer) 1\n');
    assert.equal(tty(map([k, map([bulk("a"), int(1)], [bulk("b"), int(2)])])),
                 '1# "k" => \n   1# "a" => (integer) 1\n   2# "b" => (integer) 2\n');
    assert.equal(tty(map([k, map([bulk("a"), arr(int(1), int(2))])])),
                 '1# "k" => \n   1# "a" => \n      1) (integer) 1\n      2) (integer) 2\n');
    assert.equal(tty(map([k, push(int(1), int(2))])), '1# "k" => \n   1) (integer) 1\n   2) (integer) 2\n');
    // A verbatim string with newlines is a scalar: it stays on the key's line.
    assert.equal(tty(map([k, verbatim("a\nb")])), '1# "k" => a\nb\n');
  });

  test("scalars inside aggregates", () => {
    assert.equal(tty(arr(bulk("a"), double("1.5"))), '1) "a"\n2) (double) 1.5\n');
    assert.equal(tty(arr(status("OK"), nil, error("ERR x"), bool(true), nilArray)),
                 "1) OK\n2) (nil)\n3) (error) ERR x\n4) (true)\n5) (nil)\n");
    assert.equal(tty(arr(arr(bulk("a"), double("1.5")))), '1) 1) "a"\n   2) (double) 1.5\n');
  });

  test("COMMAND INFO under RESP3: a set of statuses, a map in a set", () => {
    const flags = set(status("readonly"), status("fast"));
    const spec = set(map([bulk("flags"), set(status("RO"), status("access"))],
                         [bulk("begin_search"), map([bulk("type"), bulk("index")],
                                                    [bulk("spec"), map([bulk("index"), int(1)])])]));
    const info = arr(bulk("get"), int(2), flags, int(1), int(1), int(1), set(), set(), spec, set());
    const lines = tty(arr(info)).split("\n");
    assert.deepEqual(lines.slice(0, 5), [
      '1)  1) "get"', "    2) (integer) 2", "    3) 1~ readonly", "       2~ fast",
      "    4) (integer) 1"]);
    assert.deepEqual(lines.slice(9, 16), [
      "    9) 1~ 1# \"flags\" => ",
      "             1~ RO",
      "             2~ access",
      "          2# \"begin_search\" => ",
      "             1# \"type\" => \"index\"",
      "             2# \"spec\" => 1# \"index\" => (integer) 1",
      "   10) (empty set)"]);
  });
});

describe("4. commands printed raw", () => {
  const raw = (...argv) => isRawCommand(argv);

  test("the table, with its argument counts", () => {
    assert.ok(raw("INFO") && raw("info", "keyspace") && raw("LOLWUT") && raw("lolwut", "VERSION", "5"));
    for (const sub of ["HTSTATS", "htstats-key", "CLIENT-EVICTION"]) {
      assert.ok(raw("debug", sub) && raw("DEBUG", sub, "0", "x"));
    }
    assert.ok(!raw("debug") && !raw("DEBUG", "SLEEP", "0"));
    assert.ok(raw("MEMORY", "malloc-stats") && raw("memory", "DOCTOR", "x") && !raw("memory", "usage", "k"));
    assert.ok(raw("CLUSTER", "NODES") && raw("cluster", "info"));
    assert.ok(!raw("CLUSTER", "INFO", "extra") && !raw("cluster", "nodes", "x") && !raw("cluster"));
    assert.ok(raw("CLIENT", "LIST") && raw("client", "list", "TYPE", "normal") && raw("client", "INFO"));
    assert.ok(!raw("client", "id"));
    assert.ok(raw("LATENCY", "GRAPH", "command") && !raw("latency", "graph") &&
              !raw("latency", "graph", "a", "b"));
    assert.ok(raw("LATENCY", "DOCTOR") && !raw("latency", "doctor", "extra"));
    assert.ok(raw("PROXY", "INFO") && raw("proxy", "info", "x") && !raw("proxy"));
    assert.ok(!raw("GET", "k") && !raw());
    assert.ok(isRawCommand([Buffer.from("INFO")]));
  });

  test("the raw formatter, with no newline added", () => {
    const info = (reply) => formatReply(reply, ["INFO"]);
    assert.equal(info(bulk("# Server\r\nredis_version:7.0.15\r\n")), "# Server\r\nredis_version:7.0.15\r\n");
    assert.equal(info(verbatim("# Server\r\n")), "# Server\r\n");
    assert.equal(info(bulk("")), "");
    assert.equal(info(status("OK")), "OK");
    assert.equal(info(double("1.5")), "1.5");
    assert.equal(info(binary([0x61, 0xff])), "a\ufffd"); // bytes as they are, shown as UTF-8
    assert.equal(formatReply(error("ERR This instance has cluster support disabled"), ["CLUSTER", "INFO"]),
                 "ERR This instance has cluster support disabled\n");
    assert.equal(info(int(12)), "12");
    assert.equal(info(nil), "");
    assert.equal(info(nilArray), "");
    assert.equal(info(bool(true)), "(true)");
    assert.equal(info(bool(false)), "(false)");
    assert.equal(info(arr(bulk("a"), arr(bulk("b"), int(2)), set(bulk("c")))), "a\nb\n2\nc");
    assert.equal(info(map([bulk("k1"), bulk("v1")], [bulk("k2"), int(2)])), "k1 v1\nk2 2");
    assert.equal(info(arr()), "");
  });

  test("with the wrong argument count, replies are formatted as usual", () => {
    assert.equal(formatReply(error("ERR wrong number of arguments for 'cluster|info' command"),
                             ["CLUSTER", "INFO", "extra"]),
                 "(error) ERR wrong number of arguments for 'cluster|info' command\n");
  });
});

describe("5. other behaviours", () => {
  test("replies redis-cli cannot print: big numbers and NaN doubles", () => {
    assert.equal(tty(big("123456789012345678901234567890")), "Unknown reply type: 13\n");
    assert.equal(formatReply(big("1"), ["INFO"]), "Unknown reply type: 13\n");
    assert.equal(tty(arr(int(1), big("1"))), "Unknown reply type: 13\n"); // the whole reply
    for (const text of ["-nan", "nan", "NaN", "", "1e999", "inf1", "1.5x", "infinity"]) {
      assert.equal(tty(double(text)), "Error: Bad double value\n", text);
    }
    assert.equal(tty(double("INF")), "(double) INF\n");
  });

  test("the time a slow command took", () => {
    assert.equal(formatElapsed(499), "");
    assert.equal(formatElapsed(499.6), "(0.50s)\n");
    assert.equal(formatElapsed(500), "(0.50s)\n");
    assert.equal(formatElapsed(1020), "(1.02s)\n");
    assert.equal(formatElapsed(12345), "(12.35s)\n"); // 12.345 is below the tie in binary
    // Exact ties round half to even, as printf("%.2f") does.
    assert.equal(formatElapsed(625), "(0.62s)\n");
    assert.equal(formatElapsed(875), "(0.88s)\n");
    assert.equal(formatElapsed(1125), "(1.12s)\n");
    assert.equal(formatElapsed(615), "(0.61s)\n"); // 0.615 is below 0.615 in binary
  });
});

describe("the prompt", () => {
  test("host:port, [db] when not 0, (TX) in a transaction, or not connected", () => {
    assert.equal(formatPrompt({ address: "127.0.0.1:6379" }), "127.0.0.1:6379> ");
    assert.equal(formatPrompt({ address: "127.0.0.1:6379", db: 15, transaction: true }),
                 "127.0.0.1:6379[15](TX)> ");
    assert.equal(formatPrompt({ address: "h:1", transaction: true }), "h:1(TX)> ");
    assert.equal(formatPrompt({ address: "h:1", connected: false }), "not connected> ");
  });
});
