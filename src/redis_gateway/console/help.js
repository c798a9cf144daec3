/* help.js: redis-cli's command help, hints and Tab completion, built from COMMAND DOCS.
 *
 * redis-cli 7.0 ships a static table of commands (help.h, generated from the same JSON
 * files COMMAND DOCS reads); building the table from the server's COMMAND DOCS gives the
 * same text, and also covers the commands of newer servers and modules.
 *
 * - entriesFromDocs(reply): the table, from a COMMAND DOCS reply (typed JSON, or plain
 *   JSON in RESP2 or RESP3 shape).
 * - hint(entries, args, endsWithSpace): the grey text redis-cli shows after the cursor.
 * - completions(entries, line): what Tab cycles through.
 * - helpText(entries, topic): the output of "help", "help <command>", "help @<group>".
 *
 * A classic script for the same reason as redis-cli.js (see there): `RedisConsole.help`.
 */
(function (module, namespace) {
  "use strict";

  // ---------------------------------------------------------------------------------
  // COMMAND DOCS to plain values

  /** A typed reply (the gateway's typed JSON) as plain JSON: maps become objects. */
  function typedToPlain(reply) {
    switch (reply.type) {
      case "map": {
        const out = {};
        for (const [k, v] of reply.value) out[typedToPlain(k)] = typedToPlain(v);
        return out;
      }
      case "array": case "set": case "push": return reply.value.map(typedToPlain);
      case "integer": return Number(reply.value);
      case "null": case "null-array": return null;
      case "error": throw new Error(reply.value);
      case "bulk":
        if ("base64" in reply) return atob(reply.base64);
        return reply.value;
      default: return reply.value; // status, double, verbatim, boolean, big number
    }
  }

  /** A map that may come as an object (RESP3) or a flat [key, value, …] list (RESP2). */
  function dict(value) {
    if (!Array.isArray(value)) return value || {};
    const out = {};
    for (let i = 0; i + 1 < value.length; i += 2) out[value[i]] = value[i + 1];
    return out;
  }

  // ---------------------------------------------------------------------------------
  // The help table

  /**
   * One argument's synopsis, as redis's utils/generate-command-help.rb writes help.h:
   * blocks join with spaces, one-ofs with "|", then "name [name ...]" for multiple,
   * the token before, and brackets when optional.
   */
  function synopsis(argument) {
    const arg = dict(argument);
    const flags = arg.flags || [];
    // COMMAND DOCS gives MIGRATE's empty-string token as ""; help.h writes it quoted.
    const token = arg.token === "" ? '""' : arg.token;
    let text;
    if (arg.type === "block") text = (arg.arguments || []).map(synopsis).join(" ");
    else if (arg.type === "oneof") text = (arg.arguments || []).map(synopsis).join("|");
    else if (arg.type === "pure-token") text = null;
    else text = arg.name;
    if (flags.includes("multiple")) {
      text = flags.includes("multiple_token") ? `${text} [${token} ${text} ...]`
        : `${text} [${text} ...]`;
    }
    if (token) text = text === null ? token : `${token} ${text}`;
    if (flags.includes("optional")) text = `[${text}]`;
    return text;
  }

  function entry(fullName, doc) {
    const argv = fullName.split("|");
    return {
      name: argv.join(" ").toUpperCase(),
      argv: argv.map((a) => a.toLowerCase()),
      params: (doc.arguments || []).map(synopsis).join(" "),
      summary: doc.summary || "",
      since: doc.since || "",
      group: doc.group || "",
    };
  }

  /** The help table from a COMMAND DOCS reply: entries sorted by name, as redis-cli's. */
  function entriesFromDocs(reply) {
    const docs = dict(reply && typeof reply.type === "string" ? typedToPlain(reply) : reply);
    const entries = [];
    for (const [name, value] of Object.entries(docs)) {
      const doc = dict(value);
      entries.push(entry(name, doc));
      for (const [subName, subValue] of Object.entries(dict(doc.subcommands))) {
        entries.push(entry(subName, dict(subValue)));
      }
    }
    return entries.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  // ---------------------------------------------------------------------------------
  // Hints and completion (hintsCallback and completionCallback of redis-cli 7.0)

  const sameName = (a, b) => a.toLowerCase() === b.toLowerCase();

  /**
   * The hint for a line split into args (strings): the longest entry whose words start
   * the line, its params without the arguments already typed (stopping at the first
   * optional one), after a space unless the line ends with whitespace. null for none.
   */
  function hint(entries, args, endsWithSpace) {
    if (!args || args.length === 0) return null;
    let best = null;
    for (const e of entries) {
      if (e.argv.length > args.length || (best && e.argv.length <= best.argv.length)) continue;
      if (e.argv.every((word, j) => sameName(word, args[j]))) best = e;
    }
    if (!best) return null;
    let text = best.params;
    let toRemove = args.length - best.argv.length;
    while (toRemove > 0 && text.length > 0) {
      if (text[0] === "[") break;
      if (text[0] === " ") toRemove--;
      text = text.slice(1);
    }
    return endsWithSpace ? text : " " + text;
  }

  /**
   * What Tab offers for the line, in order: command names (upper case, as redis-cli),
   * or after "help " also "@group" topics. Tab cycles through them, then the line as typed.
   */
  function completions(entries, line) {
    let start = 0;
    let topics = [];
    if (line.slice(0, 5).toLowerCase() === "help ") {
      start = 5;
      while (/[ \t\n\v\f\r]/.test(line[start] || "")) start++; // C isspace
      const groups = [...new Set(entries.map((e) => e.group).filter(Boolean))].sort();
      topics = groups.map((g) => "@" + g);
    }
    const typed = line.slice(start).toLowerCase();
    const names = [...topics, ...entries.map((e) => e.name)].sort();
    return names.filter((n) => n.toLowerCase().startsWith(typed))
      .map((n) => line.slice(0, start) + n);
  }

  // ---------------------------------------------------------------------------------
  // help (cliOutputHelp)

  const GENERIC_HELP = [
    "redis-gateway console (redis-cli 7.0 compatible)",
    "To get help about Redis commands type:",
    '      "help @<group>" to get a list of commands in <group>',
    '      "help <command>" for help on <command>',
    '      "help <tab>" to get a list of possible help topics',
    '      "quit" to exit',
    "",
    "To set redis-cli preferences:",
    '      ":set hints" enable online hints',
    '      ":set nohints" disable online hints',
    "Preferences and history are kept in this browser.",
    "",
  ].join("\n");

  function commandHelp(e, withGroup) {
    let text = `\n  ${e.name} ${e.params}\n  summary: ${e.summary}\n  since: ${e.since}\n`;
    if (withGroup) text += `  group: ${e.group}\n`;
    return text;
  }

  /** The output of "help" followed by topic (a list of strings). */
  function helpText(entries, topic) {
    if (topic.length === 0) return GENERIC_HELP;
    let group = null;
    if (topic[0].startsWith("@")) {
      const wanted = topic[0].slice(1).toLowerCase();
      group = entries.some((e) => e.group === wanted) ? wanted : null;
    }
    let out = "";
    for (const e of entries) {
      if (group !== null) {
        if (e.group === group) out += commandHelp(e, false);
      } else if (topic.length <= e.argv.length &&
                 topic.every((word, j) => sameName(word, e.argv[j]))) {
        out += commandHelp(e, true);
      }
    }
    return out + "\n";
  }

  module.exports = { typedToPlain, entriesFromDocs, synopsis, hint, completions, helpText,
                     GENERIC_HELP };
  if (namespace) namespace.help = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}));
