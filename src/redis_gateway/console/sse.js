/* sse.js: the gateway's pub/sub and MONITOR event streams (Server-Sent Events on the
 * Upstash wire, streams/sse.py) read back into the replies redis-cli prints, with no DOM.
 *
 *   const events = eventReader("subscribe", [channel bytes…]);
 *   for (const reply of events.feed(chunk)) …     // chunk: Uint8Array, as fetch reads it
 *
 * Events and the typed replies they become (redis-cli formats those with formatReply):
 *   data: subscribe,<ch>,<n>           ["subscribe", ch, (integer) n]  (psubscribe, ssubscribe)
 *   data: message,<ch>,<payload>       ["message", ch, payload]        (smessage)
 *   data: pmessage,<pat>,<ch>,<payload> ["pmessage", pat, ch, payload]
 *   data: "OK", then data: <line>      MONITOR: OK, then each line as a status
 *   event: error / event: reconnect    the gateway ended the stream: an error reply
 * The wire separates fields with commas and names may hold commas too: a message's
 * channel is the subscribed name it starts with (the longest), a pattern message's
 * channel ends at its first comma, as @upstash/redis reads it.
 *
 * Bytes stay bytes: lines are split on LF bytes, and each value is typed "bulk" with its
 * text when it is UTF-8, its base64 when not (as the gateway's typed replies are). A
 * payload's line breaks come as continuation lines and are read back as LF.
 *
 * A classic script for the same reason as redis-cli.js: `RedisConsole.sse`.
 */
(function (module, namespace) {
  "use strict";

  const strictUtf8 = new TextDecoder("utf-8", { fatal: true });
  const ascii = new TextDecoder("latin1");
  const COMMA = 0x2c;
  const LF = 0x0a;
  const CR = 0x0d;

  function bulk(bytes) {
    try {
      return { type: "bulk", value: strictUtf8.decode(bytes) };
    } catch {
      let binary = "";
      for (const b of bytes) binary += String.fromCharCode(b);
      return { type: "bulk", base64: btoa(binary) };
    }
  }

  function text(bytes) {
    return strictUtf8.decode(bytes);
  }

  function startsWith(bytes, prefix) {
    if (bytes.length < prefix.length) return false;
    for (let i = 0; i < prefix.length; i++) if (bytes[i] !== prefix[i]) return false;
    return true;
  }

  function concat(parts) {
    const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
    let at = 0;
    for (const p of parts) { out.set(p, at); at += p.length; }
    return out;
  }

  const DATA = new TextEncoder().encode("data:");
  const EVENT = new TextEncoder().encode("event:");

  /** The event's fields from its lines: SSE's rules (one space after the colon dropped). */
  function parseEvent(lines) {
    let kind = "message";
    const data = [];
    for (const line of lines) {
      if (line[0] === 0x3a) continue; // a comment: the keep-alive
      if (startsWith(line, DATA)) {
        const value = line.subarray(DATA.length);
        data.push(value[0] === 0x20 ? value.subarray(1) : value);
      } else if (startsWith(line, EVENT)) {
        kind = ascii.decode(line.subarray(EVENT.length)).trim();
      }
    }
    if (data.length === 0) return null;
    const joined = [];
    data.forEach((part, i) => { if (i) joined.push(Uint8Array.of(LF)); joined.push(part); });
    return { kind, data: concat(joined) };
  }

  function indexOf(bytes, byte, from = 0) {
    for (let i = from; i < bytes.length; i++) if (bytes[i] === byte) return i;
    return -1;
  }

  function lastIndexOf(bytes, byte) {
    for (let i = bytes.length - 1; i >= 0; i--) if (bytes[i] === byte) return i;
    return -1;
  }

  /** The longest of `names` that `bytes` starts with, followed by a comma; else up to the
   * first comma. */
  function leadingName(bytes, names) {
    let best = -1;
    for (const name of names) {
      if (name.length > best && bytes[name.length] === COMMA && startsWith(bytes, name)) {
        best = name.length;
      }
    }
    return best >= 0 ? best : indexOf(bytes, COMMA);
  }

  function eventReader(command, names) {
    const monitor = command === "monitor";
    let pending = new Uint8Array(0);
    let lines = [];
    let ended = false;

    function reply(event) {
      if (event.kind === "error" || event.kind === "reconnect") {
        ended = true;
        // "error,<reason>,<detail>" / "reconnect,draining,<detail>"
        const body = text(event.data);
        const [, reason, ...detail] = body.split(",");
        const why = detail.length ? `${reason}: ${detail.join(",")}` : reason;
        return { type: "error", value: `ERR the gateway ended the stream (${why})` };
      }
      const data = event.data;
      if (monitor) {
        return { type: "status", value: text(data) === '"OK"' ? "OK" : text(data) };
      }
      const first = indexOf(data, COMMA);
      const kind = ascii.decode(data.subarray(0, first));
      const rest = data.subarray(first + 1);
      if (kind.endsWith("subscribe")) { // the confirmation: the count is after the last comma
        const last = lastIndexOf(rest, COMMA);
        return { type: "array", value: [bulk(data.subarray(0, first)), bulk(rest.subarray(0, last)),
                                        { type: "integer", value: ascii.decode(rest.subarray(last + 1)) }] };
      }
      const split = leadingName(rest, names);
      const head = rest.subarray(0, split);
      const tail = rest.subarray(split + 1);
      if (kind === "pmessage") {
        const comma = indexOf(tail, COMMA);
        return { type: "array", value: [bulk(data.subarray(0, first)), bulk(head),
                                        bulk(tail.subarray(0, comma)), bulk(tail.subarray(comma + 1))] };
      }
      return { type: "array", value: [bulk(data.subarray(0, first)), bulk(head), bulk(tail)] };
    }

    return {
      get ended() { return ended; },
      feed(chunk) {
        const out = [];
        const bytes = concat([pending, chunk]);
        let start = 0;
        for (let i = 0; i < bytes.length; i++) {
          if (bytes[i] !== LF) continue;
          let line = bytes.subarray(start, i);
          if (line[line.length - 1] === CR) line = line.subarray(0, line.length - 1);
          start = i + 1;
          if (line.length > 0) {
            lines.push(line);
            continue;
          }
          const event = parseEvent(lines);
          lines = [];
          if (event && !ended) out.push(reply(event));
        }
        pending = bytes.slice(start);
        return out;
      },
    };
  }

  module.exports = { eventReader, parseEvent };
  if (namespace) namespace.sse = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}));
