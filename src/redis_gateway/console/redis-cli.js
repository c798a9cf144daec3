/* redis-cli.js: what redis-cli 7.0 does with a typed line and with a reply, without a DOM.
 *
 * - splitArgs(line): the line split into byte-exact arguments (hiredis sdssplitargs).
 * - interpret(args): what the REPL does before sending (repeat count, local commands).
 * - formatReply(reply, argv): a typed reply as redis-cli prints it (cliFormatReplyTTY, or
 *   cliFormatReplyRaw for INFO and friends).
 * - formatPrompt, formatElapsed: the prompt and the "(1.02s)" line.
 *
 * Replies are the gateway's typed JSON (`Redis-Reply-Format: typed-resp2|typed-resp3`):
 * {"type": "bulk", "value": "…"} and so on; see the README.
 *
 * This file is a classic script, not an ES module, on purpose: the console page must work
 * opened as a local file, and Chrome refuses module scripts from file:// URLs. Node and
 * bundlers see a CommonJS module whose named exports work with `import { … } from`;
 * a page gets the same functions as `RedisConsole.cli`.
 */
(function (module, namespace) {
  "use strict";

  const utf8Encoder = new TextEncoder();
  const utf8Decoder = new TextDecoder("utf-8"); // replaces invalid bytes with U+FFFD

  const MESSAGES = Object.freeze({
    invalidArguments: "Invalid argument(s)\n",
    invalidRepeat: "Invalid redis-cli repeat command option value.\n",
    restart: "Use 'restart' only in Lua debugging mode.\n",
  });

  // ---------------------------------------------------------------------------------
  // Bytes

  /** The UTF-8 bytes of a string; a Uint8Array is returned as it is. */
  function toBytes(value) {
    return value instanceof Uint8Array ? value : utf8Encoder.encode(String(value));
  }

  /** Bytes as text for the screen: invalid UTF-8 becomes U+FFFD, as a terminal shows it. */
  function bytesToText(bytes) {
    return utf8Decoder.decode(bytes);
  }

  /** The bytes of a C string: redis-cli compares and converts arguments up to a NUL. */
  function cString(bytes) {
    const end = bytes.indexOf(0);
    return end < 0 ? bytes : bytes.subarray(0, end);
  }

  /** ASCII lower case of an argument (only ASCII letters fold, as with strcasecmp). */
  function lowerName(arg) {
    return bytesToText(cString(toBytes(arg))).replace(/[A-Z]+/g, (s) => s.toLowerCase());
  }

  function decodeBase64(text) {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  }

  /** A typed bulk string's bytes: "value" when it is UTF-8, "base64" when it is not. */
  function bulkBytes(reply) {
    return "base64" in reply ? decodeBase64(reply.base64) : utf8Encoder.encode(reply.value);
  }

  // C isspace() in the "C" locale: space, \t, \n, \v, \f, \r.
  function isSpace(byte) {
    return byte === 0x20 || (byte >= 0x09 && byte <= 0x0d);
  }

  function isHex(byte) {
    return (byte >= 0x30 && byte <= 0x39) || (byte >= 0x41 && byte <= 0x46) ||
      (byte >= 0x61 && byte <= 0x66);
  }

  function hexValue(byte) {
    return byte <= 0x39 ? byte - 0x30 : (byte | 0x20) - 0x61 + 10;
  }

  // ---------------------------------------------------------------------------------
  // 1. Splitting a line (sdssplitargs)

  const DOUBLE_QUOTE_ESCAPES = { 0x6e: 0x0a, 0x72: 0x0d, 0x74: 0x09, 0x62: 0x08, 0x61: 0x07 };

  /**
   * Splits a typed line (a string, handled as its UTF-8 bytes, or a Uint8Array) into
   * arguments, each a Uint8Array. Returns null on a parse error (an unclosed quote, or a
   * closing quote followed by something other than whitespace), where redis-cli prints
   * "Invalid argument(s)". A line with only whitespace gives [].
   */
  function splitArgs(line) {
    // The line is a C string in redis-cli: a NUL byte ends it.
    const p = cString(toBytes(line));
    const at = (i) => (i < p.length ? p[i] : 0);
    const args = [];
    let i = 0;
    for (;;) {
      while (i < p.length && isSpace(p[i])) i++;
      if (i >= p.length) return args;
      const current = [];
      let inDouble = false;
      let inSingle = false;
      let done = false;
      while (!done) {
        const c = at(i);
        if (inDouble) {
          if (c === 0x5c && at(i + 1) === 0x78 && isHex(at(i + 2)) && isHex(at(i + 3))) {
            current.push(hexValue(at(i + 2)) * 16 + hexValue(at(i + 3)));
            i += 3;
          } else if (c === 0x5c && at(i + 1)) {
            i++;
            current.push(DOUBLE_QUOTE_ESCAPES[at(i)] ?? at(i));
          } else if (c === 0x22) {
            if (at(i + 1) && !isSpace(at(i + 1))) return null;
            done = true;
          } else if (!c) {
            return null; // unterminated quotes
          } else {
            current.push(c);
          }
        } else if (inSingle) {
          if (c === 0x5c && at(i + 1) === 0x27) {
            i++;
            current.push(0x27);
          } else if (c === 0x27) {
            if (at(i + 1) && !isSpace(at(i + 1))) return null;
            done = true;
          } else if (!c) {
            return null;
          } else {
            current.push(c);
          }
        } else if (c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09 || c === 0) {
          done = true; // \v and \f do not end an unquoted argument
        } else if (c === 0x22) {
          inDouble = true;
        } else if (c === 0x27) {
          inSingle = true;
        } else {
          current.push(c);
        }
        if (at(i)) i++;
      }
      args.push(Uint8Array.from(current));
    }
  }

  // ---------------------------------------------------------------------------------
  // 2. The REPL before sending

  const INT64_MAX = 2n ** 63n - 1n;
  const INT64_MIN = -(2n ** 63n);

  /**
   * C strtol(s, &end, 10) on an argument: {whole, value (BigInt), overflow}. "whole" means
   * *end == '\0' afterwards; with no digits strtol leaves end at the start, so the empty
   * string is whole (value 0) and "  " or "+" are not.
   */
  function strtol(arg) {
    const s = cString(toBytes(arg));
    let i = 0;
    while (i < s.length && isSpace(s[i])) i++;
    let negative = false;
    if (s[i] === 0x2b || s[i] === 0x2d) negative = s[i++] === 0x2d;
    const start = i;
    while (i < s.length && s[i] >= 0x30 && s[i] <= 0x39) i++;
    if (i === start) return { whole: s.length === 0, value: 0n, overflow: false };
    let value = BigInt(bytesToText(s.subarray(start, i)));
    if (negative) value = -value;
    const overflow = value > INT64_MAX || value < INT64_MIN;
    return { whole: i === s.length, value, overflow };
  }

  /**
   * What the REPL does with split arguments, in redis-cli's order:
   *   {kind: "empty"}                      nothing typed: print nothing
   *   {kind: "print", text}                a message from redis-cli itself
   *   {kind: "exit"}                       quit / exit
   *   {kind: "hints", on}                  :set hints / :set nohints
   *   {kind: "connect", host, port}        connect host port
   *   {kind: "clear"}                      clear
   *   {kind: "help", topic}                help / ? (printed once, whatever the repeat)
   *   {kind: "send", args, repeat}         send args, repeat times (repeat is a Number)
   * and history: whether the line goes into the history.
   *
   * As in redis-cli 7.0.15, exit, :…, restart, connect and clear are recognised only as
   * the first argument (so "2 clear" sends CLEAR twice), while help is recognised after a
   * repeat count. Pass null (a parse error) to get the "Invalid argument(s)" message.
   */
  function interpret(args) {
    if (args === null) return { kind: "print", text: MESSAGES.invalidArguments, history: true };
    if (args.length === 0) return { kind: "empty", history: false };
    let repeat = 1;
    let skip = 0;
    if (args.length > 1) {
      const count = strtol(args[0]);
      if (count.whole) {
        if (count.overflow || count.value <= 0n) {
          return { kind: "print", text: MESSAGES.invalidRepeat, history: false };
        }
        repeat = Number(count.value);
        skip = 1;
      }
    }
    const command = args.slice(skip);
    return { ...localOrSend(args, command, repeat), history: !isSensitive(command) };
  }

  function localOrSend(args, command, repeat) {
    const first = lowerName(args[0]);
    if (first === "quit" || first === "exit") return { kind: "exit" };
    if (first.startsWith(":")) return preference(args);
    if (first === "restart") return { kind: "print", text: MESSAGES.restart };
    if (args.length === 3 && first === "connect") {
      return { kind: "connect", host: argText(args[1]), port: argText(args[2]) };
    }
    if (args.length === 1 && first === "clear") return { kind: "clear" };
    const name = lowerName(command[0]);
    if (name === "help" || name === "?") {
      return { kind: "help", topic: command.slice(1).map(argText) };
    }
    return { kind: "send", args: command, repeat };
  }

  /** Commands with a password in them stay out of the history (isSensitiveCommand). */
  function isSensitive(args) {
    const word = args.map(lowerName);
    const argc = word.length;
    if (word[0] === "auth") return true;
    if (argc > 1 && word[0] === "acl" && word[1] === "setuser") return true;
    if (argc > 2 && word[0] === "config" && word[1] === "set") {
      return ["masterauth", "masteruser", "requirepass"].includes(word[2]);
    }
    if (argc > 4 && word[0] === "hello") {
      // HELLO [protover [AUTH username password] [SETNAME clientname]]
      for (let j = 2; j < argc; j++) {
        const more = argc - 1 - j;
        if (word[j] === "auth" && more >= 2) return true;
        if (word[j] === "setname" && more) j++;
        else return false;
      }
    }
    if (argc > 7 && word[0] === "migrate") {
      // MIGRATE host port key destination-db timeout [COPY] [REPLACE] [AUTH password]
      //   [AUTH2 username password] [KEYS key …]
      for (let j = 6; j < argc; j++) {
        const more = argc - 1 - j;
        if ((word[j] === "auth" && more) || (word[j] === "auth2" && more >= 2)) return true;
        if (word[j] === "keys" && more) return false;
      }
    }
    return false;
  }

  function argText(arg) {
    return bytesToText(cString(toBytes(arg)));
  }

  function preference(args) {
    if (lowerName(args[0]) === ":set" && args.length >= 2) {
      const name = lowerName(args[1]);
      if (name === "hints") return { kind: "hints", on: true };
      if (name === "nohints") return { kind: "hints", on: false };
      return { kind: "print", text: `unknown redis-cli preference '${argText(args[1])}'\n` };
    }
    return { kind: "print", text: `unknown redis-cli internal command '${argText(args[0])}'\n` };
  }

  // ---------------------------------------------------------------------------------
  // 3. Reply formatting

  /** A reply redis-cli cannot print: it writes this to stderr and exits. */
  class FatalReplyError extends Error {}

  /** hiredis accepts "inf", "-inf" and what strtod reads as a finite number, nothing else. */
  function checkDouble(text) {
    const lower = text.toLowerCase();
    if (lower === "inf" || lower === "-inf") return;
    const decimal = /^[ \t\n\v\f\r]*[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;
    if (!decimal.test(text) || !Number.isFinite(Number(text.trim()))) {
      throw new FatalReplyError("Error: Bad double value");
    }
  }

  /** hiredis's reply type numbers, for the "Unknown reply type" message. */
  const HIREDIS_TYPE = { bignumber: 13 };

  function unknownType(reply) {
    return new FatalReplyError(`Unknown reply type: ${HIREDIS_TYPE[reply.type] ?? reply.type}`);
  }

  /** A bulk string as redis-cli shows it: quoted, escaped byte by byte (sdscatrepr). */
  function quoteBytes(bytes) {
    let out = '"';
    for (const b of bytes) {
      switch (b) {
        case 0x5c: out += "\\\\"; break;
        case 0x22: out += '\\"'; break;
        case 0x0a: out += "\\n"; break;
        case 0x0d: out += "\\r"; break;
        case 0x09: out += "\\t"; break;
        case 0x07: out += "\\a"; break;
        case 0x08: out += "\\b"; break;
        default:
          out += b >= 0x20 && b <= 0x7e ? String.fromCharCode(b)
            : "\\x" + b.toString(16).padStart(2, "0");
      }
    }
    return out + '"';
  }

  const EMPTY = { array: "(empty array)", set: "(empty set)", map: "(empty hash)",
                  push: "(empty push)" };
  const MARKER = { array: ")", push: ")", set: "~", map: "#" };

  /** Whether a map value goes on its own lines after "=> " (isMultilineValue). */
  function isMultiline(reply) {
    const items = reply.value;
    switch (reply.type) {
      case "array": case "set": case "push":
        return items.length > 1 || (items.length === 1 && isMultiline(items[0]));
      case "map":
        return items.length > 1 || (items.length === 1 && isMultiline(items[0][1]));
      default:
        return false;
    }
  }

  /** cliFormatReplyTTY: every reply ends with "\n"; prefix indents an aggregate's entries. */
  function formatTTY(reply, prefix) {
    switch (reply.type) {
      case "error": return `(error) ${reply.value}\n`;
      case "status": return `${reply.value}\n`;
      case "integer": return `(integer) ${reply.value}\n`;
      case "double": checkDouble(reply.value); return `(double) ${reply.value}\n`;
      case "bulk": return quoteBytes(bulkBytes(reply)) + "\n";
      case "verbatim": return `${reply.value}\n`;
      case "null": case "null-array": return "(nil)\n";
      case "boolean": return reply.value ? "(true)\n" : "(false)\n";
      case "array": case "set": case "push": case "map": return formatAggregate(reply, prefix);
      default: throw unknownType(reply);
    }
  }

  function formatAggregate(reply, prefix) {
    const items = reply.value;
    if (items.length === 0) return EMPTY[reply.type] + "\n";
    const width = String(items.length).length;
    const childPrefix = prefix + " ".repeat(width + 2);
    let out = "";
    items.forEach((item, i) => {
      // The first marker continues the line the parent's marker (or "=> ") started.
      out += (i === 0 ? "" : prefix) + String(i + 1).padStart(width) + MARKER[reply.type] + " ";
      if (reply.type !== "map") {
        out += formatTTY(item, childPrefix);
        return;
      }
      const [key, value] = item;
      out += formatTTY(key, childPrefix).slice(0, -1) + " => ";
      if (isMultiline(value)) out += "\n" + childPrefix;
      out += formatTTY(value, childPrefix);
    });
    return out;
  }

  /** cliFormatReplyRaw: what INFO and the other raw-output commands print (no "\n" added). */
  function formatRaw(reply) {
    switch (reply.type) {
      case "null": case "null-array": return "";
      case "error": return `${reply.value}\n`;
      case "status": case "verbatim": return reply.value;
      case "bulk": return "base64" in reply ? bytesToText(bulkBytes(reply)) : reply.value;
      case "integer": return reply.value;
      case "double": checkDouble(reply.value); return reply.value;
      case "boolean": return reply.value ? "(true)" : "(false)";
      case "array": case "set": case "push": return reply.value.map(formatRaw).join("\n");
      case "map": return reply.value.map(([k, v]) => `${formatRaw(k)} ${formatRaw(v)}`).join("\n");
      default: throw unknownType(reply);
    }
  }

  // [command, subcommand or null, how argc must compare, count]
  const RAW_COMMANDS = [
    ["info", null, ">=", 1], ["lolwut", null, ">=", 1],
    ["debug", "htstats", ">=", 2], ["debug", "htstats-key", ">=", 2],
    ["debug", "client-eviction", ">=", 2],
    ["memory", "malloc-stats", ">=", 2], ["memory", "doctor", ">=", 2],
    ["cluster", "nodes", "==", 2], ["cluster", "info", "==", 2],
    ["client", "list", ">=", 2], ["client", "info", ">=", 2],
    ["latency", "graph", "==", 3], ["latency", "doctor", "==", 2],
    ["proxy", "info", ">=", 2],
  ];

  /** Whether redis-cli prints this command's reply with the raw formatter. */
  function isRawCommand(argv) {
    if (!argv || argv.length === 0) return false;
    const name = lowerName(argv[0]);
    const sub = argv.length > 1 ? lowerName(argv[1]) : null;
    return RAW_COMMANDS.some(([cmd, subcommand, cmp, count]) =>
      cmd === name && (subcommand === null || subcommand === sub) &&
      (cmp === "==" ? argv.length === count : argv.length >= count));
  }

  /**
   * The text redis-cli prints for a reply to the command argv (arguments as strings or
   * Uint8Arrays; without argv the TTY formatter is used). A reply redis-cli cannot print
   * (a RESP3 big number, a NaN double) gives the message it writes before exiting.
   */
  function formatReply(reply, argv) {
    try {
      return isRawCommand(argv) ? formatRaw(reply) : formatTTY(reply, "");
    } catch (err) {
      if (err instanceof FatalReplyError) return err.message + "\n";
      throw err;
    }
  }

  // ---------------------------------------------------------------------------------
  // Prompt and timing

  /** "host:port[db](TX)> ", or "not connected> " (cliRefreshPrompt). */
  function formatPrompt({ address, db = 0, transaction = false, connected = true }) {
    if (!connected) return "not connected> ";
    return `${address}${db ? `[${db}]` : ""}${transaction ? "(TX)" : ""}> `;
  }

  /**
   * The line redis-cli prints after a command that took 500 ms or more: "(%.2fs)\n".
   * toFixed and printf agree except on exact ties, where printf rounds half to even;
   * a whole number of milliseconds is an exact tie only for x.125, x.375, x.625, x.875.
   */
  function formatElapsed(ms) {
    ms = Math.round(ms);
    if (ms < 500) return "";
    let text = (ms / 1000).toFixed(2);
    if (ms % 125 === 0 && ms % 10 === 5) {
      const cents = (ms - 5) / 10; // round half to even
      text = ((cents % 2 === 0 ? cents : cents + 1) / 100).toFixed(2);
    }
    return `(${text}s)\n`;
  }

  module.exports = {
    MESSAGES, splitArgs, strtol, interpret, isSensitive, formatReply, formatTTY, formatRaw,
    isRawCommand, quoteBytes, formatPrompt, formatElapsed, toBytes, bytesToText, bulkBytes,
    lowerName,
  };
  if (namespace) namespace.cli = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}));
