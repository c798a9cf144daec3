/* transport.js: how the console reaches Redis, with no DOM: the gateway's REST API, or a
 * GraphQL endpoint with the AppSync sample's schema.
 *
 * Both transports have the same interface; every reply is the gateway's typed JSON
 * ({"type": …, "value": …}), and a refusal is a typed error with its HTTP status:
 *   name, address                    what and where ("host:port"), for messages and the prompt
 *   command(args, protocol)          one command (args: Uint8Array[]), RESP 2 or 3
 *   transaction(commands, protocol)  MULTI … EXEC of the commands: the EXEC reply
 *   docs()                           the COMMAND DOCS reply (for help.entriesFromDocs)
 *   stream(args, protocol, onReply, signal)   (the gateway only) SUBSCRIBE, PSUBSCRIBE,
 *                                    SSUBSCRIBE or MONITOR: each reply to onReply as it comes,
 *                                    until signal aborts or the gateway ends the stream
 * A network failure throws ConnectionError.
 *
 * A classic script for the same reason as redis-cli.js (see there): `RedisConsole.transport`.
 */
(function (module, namespace, sse) {
  "use strict";

  /** The gateway (or the network) could not be reached at all. */
  class ConnectionError extends Error {}

  const strictUtf8 = new TextDecoder("utf-8", { fatal: true });

  /** The arguments as strings, or null when one is not valid UTF-8 (JSON cannot carry it). */
  function utf8Texts(args) {
    try {
      return args.map((a) => strictUtf8.decode(a));
    } catch {
      return null;
    }
  }

  function error(message, status) {
    return status === undefined ? { type: "error", value: message }
      : { type: "error", value: message, status };
  }

  /** "host:port" of a URL, the port written out as redis-cli does (IPv6 in brackets). */
  function addressOf(url) {
    const u = new URL(url);
    return `${u.hostname}:${u.port || (u.protocol === "https:" ? "443" : "80")}`;
  }

  async function post(fetchFn, url, init) {
    let response;
    try {
      response = await fetchFn(url, { method: "POST", ...init });
    } catch (err) {
      throw new ConnectionError(err && err.message ? err.message : String(err));
    }
    const text = await response.text();
    try {
      return { status: response.status, body: JSON.parse(text) };
    } catch {
      const kind = response.headers.get("content-type") || "no content type";
      return { status: response.status, body: null,
               problem: `unexpected answer from ${url}: HTTP ${response.status} (${kind})` };
    }
  }

  // ---------------------------------------------------------------------------------
  // The gateway's REST API

  // Bytes that stay as they are in a path segment; every other byte is %XX.
  const UNRESERVED = /[A-Za-z0-9\-_.~]/;

  function pathSegment(bytes) {
    let out = "";
    for (const b of bytes) {
      const ch = String.fromCharCode(b);
      out += b < 0x80 && UNRESERVED.test(ch) ? ch
        : "%" + b.toString(16).toUpperCase().padStart(2, "0");
    }
    return out;
  }

  class GatewayTransport {
    /** url: the gateway's base URL (with its base_path, if any); token: a gateway token. */
    constructor({ url, token, fetch = globalThis.fetch.bind(globalThis) }) {
      this.name = "redis-gateway";
      this.base = url.replace(/\/+$/, "");
      this.address = addressOf(this.base);
      this.token = token;
      this.fetch = fetch;
    }

    headers(protocol, contentType) {
      return { "Authorization": `Bearer ${this.token}`, "Content-Type": contentType,
               "Redis-Reply-Format": `typed-resp${protocol}` };
    }

    async request(path, body, protocol, contentType = "application/json") {
      const answer = await post(this.fetch, this.base + path,
                                { headers: this.headers(protocol, contentType), body });
      if (answer.problem) return { error: error(answer.problem, answer.status) };
      return { status: answer.status, body: answer.body };
    }

    /** A gateway refusal ({"error"} with a 4xx/5xx status) as a typed error. */
    static refusal(answer) {
      if (answer.error) return answer.error;
      if (answer.body && typeof answer.body.error === "string") {
        return error(answer.body.error, answer.status);
      }
      return null;
    }

    async command(args, protocol = 2) {
      const texts = utf8Texts(args);
      let answer;
      if (texts) {
        answer = await this.request("/", JSON.stringify(texts), protocol);
      } else {
        const request = binaryRequest(args);
        if (request.error) return request.error;
        answer = await this.request(request.path, request.body, protocol,
                                    "application/octet-stream");
      }
      return GatewayTransport.refusal(answer) ||
        this.expect(answer, answer.body && answer.body.result);
    }

    /** The reply, unless the URL answered JSON that is not the gateway's (another server). */
    expect(answer, reply) {
      return reply && typeof reply === "object" ? reply
        : error(`unexpected answer from ${this.base}: not a redis-gateway reply`, answer.status);
    }

    async transaction(commands, protocol = 2) {
      const texts = commands.map(utf8Texts);
      if (texts.some((t) => t === null)) {
        return error("ERR the console sends transactions as JSON, which carries only UTF-8 " +
                     "text: send binary (non-UTF-8) arguments outside MULTI");
      }
      const answer = await this.request("/multi-exec", JSON.stringify(texts), protocol);
      return GatewayTransport.refusal(answer) ||
        this.expect(answer, Array.isArray(answer.body) && { type: "array", value: answer.body });
    }

    async docs() {
      return this.command([new TextEncoder().encode("COMMAND"),
                           new TextEncoder().encode("DOCS")], 3);
    }

    /**
     * A streaming command over the gateway's Server-Sent Events endpoints (/subscribe/<ch>…,
     * /psubscribe, /ssubscribe, /monitor), read with fetch as bytes, each event turned back
     * into the reply redis-cli would have printed (sse.js).
     */
    async stream(args, protocol, onReply, signal) {
      const name = new TextDecoder().decode(args[0]).toLowerCase();
      const names = args.slice(1);
      if ((name === "monitor") !== (names.length === 0)) {
        onReply(error(`ERR wrong number of arguments for '${name}' command`));
        return;
      }
      const url = `${this.base}/${name}${names.map((n) => "/" + pathSegment(n)).join("")}`;
      let response;
      try {
        response = await this.fetch(url, {
          method: "POST", signal, body: "[]",
          headers: { "Authorization": `Bearer ${this.token}`, "Accept": "text/event-stream",
                     "Content-Type": "application/json" } });
      } catch (err) {
        if (signal.aborted) return;
        throw new ConnectionError(err && err.message ? err.message : String(err));
      }
      if (!response.ok || !(response.headers.get("content-type") || "")
        .startsWith("text/event-stream")) {
        const text = await response.text();
        let message = `unexpected answer from ${url}: HTTP ${response.status}`;
        try { message = JSON.parse(text).error || message; } catch { /* as above */ }
        onReply(error(message, response.status));
        return;
      }
      const events = sse.eventReader(name, names);
      const reader = response.body.getReader();
      try {
        for (;;) {
          const { done, value } = await reader.read();
          if (done) break;
          for (const reply of events.feed(value)) onReply(reply);
        }
      } catch (err) {
        if (signal.aborted) return;
        throw new ConnectionError(err && err.message ? err.message : String(err));
      } finally {
        reader.releaseLock();
      }
    }
  }

  /**
   * A command with bytes that are not UTF-8, in the gateway's path style: each argument a
   * percent-encoded path segment, except the last, which goes as the raw body (the body
   * is appended as the last argument, and keeps any size). A segment "." or ".." would be
   * removed by URL normalisation, so such a command cannot be sent this way.
   */
  function binaryRequest(args) {
    const last = args[args.length - 1];
    const inPath = args.length > 1 && last.length > 0 ? args.slice(0, -1) : args;
    const dots = inPath.find((a) => a.length > 0 && a.length <= 2 && a.every((b) => b === 0x2e));
    if (dots) {
      return { error: error("ERR the console cannot send '.' or '..' in a command that also " +
                            "has binary (non-UTF-8) arguments") };
    }
    return { path: "/" + inPath.map(pathSegment).join("/"),
             body: inPath === args ? undefined : last };
  }

  // ---------------------------------------------------------------------------------
  // AppSync: the sample's schema, getRedis(Command: [String!]): [String] for a command and
  // putRedis(Command: [[String!]]): String (JSON text) for a transaction.

  /** A putRedis JSON value (RESP2 shapes: numbers, strings, null, lists) as typed JSON. */
  function jsonToTyped(value) {
    if (value === null || value === undefined) return { type: "null" };
    if (typeof value === "number") return { type: "integer", value: String(value) };
    if (typeof value === "string") return { type: "bulk", value };
    if (Array.isArray(value)) return { type: "array", value: value.map(jsonToTyped) };
    if (typeof value === "object" && typeof value.error === "string") return error(value.error);
    return { type: "bulk", value: String(value) };
  }

  /**
   * A getRedis answer as typed JSON. The field is a list of strings: a list reply is one
   * string per element, anything else a list of one, so types and nesting are lost and a
   * one-element list shows as a single value.
   */
  function stringsToTyped(list) {
    if (!Array.isArray(list)) return jsonToTyped(list);
    const item = (v) => (v === null ? { type: "null" } : { type: "bulk", value: String(v) });
    return list.length === 1 ? item(list[0]) : { type: "array", value: list.map(item) };
  }

  function graphqlErrors(errors, status) {
    const first = errors[0] || {};
    return error(first.message || first.errorType || "GraphQL error", status);
  }

  /** The gateway (or an AppSync resolver) refuses a write in a Query: retry as putRedis. */
  function refusedAsWrite(errors) {
    return errors.some((e) => /Mutation/.test(e.message || ""));
  }

  class AppSyncTransport {
    /** url: the GraphQL endpoint; apiKey: sent as x-api-key, as the sample page does. */
    constructor({ url, apiKey, fetch = globalThis.fetch.bind(globalThis) }) {
      this.name = "the GraphQL endpoint";
      this.url = url;
      this.address = addressOf(url);
      this.apiKey = apiKey;
      this.fetch = fetch;
    }

    /** One GraphQL operation, in the sample page's shape: {"query": "…"} with literals. */
    async operation(query) {
      const answer = await post(this.fetch, this.url, {
        headers: { "Content-Type": "application/json", "x-api-key": this.apiKey },
        body: JSON.stringify({ query }),
      });
      if (answer.problem) return { error: error(answer.problem, answer.status) };
      const body = answer.body || {};
      if (Array.isArray(body.errors) && body.errors.length) {
        return { errors: body.errors, error: graphqlErrors(body.errors, answer.status) };
      }
      return { data: body.data || {} };
    }

    async putRedis(commands) {
      // JSON string literals are valid GraphQL string literals.
      const literal = JSON.stringify(commands);
      const result = await this.operation(`mutation { putRedis(Command: ${literal}) }`);
      if (result.error) return result.error;
      try {
        return jsonToTyped(JSON.parse(result.data.putRedis));
      } catch {
        return { type: "status", value: String(result.data.putRedis) }; // not JSON: as sent
      }
    }

    async command(args) {
      const texts = utf8Texts(args);
      if (!texts) {
        return error("ERR GraphQL strings carry only UTF-8 text: " +
                     "this command has binary arguments");
      }
      const result = await this.operation(`query { getRedis(Command: ${JSON.stringify(texts)}) }`);
      if (result.errors && refusedAsWrite(result.errors)) {
        const replies = await this.putRedis([texts]);
        return replies.type === "array" ? replies.value[0] : replies;
      }
      return result.error || stringsToTyped(result.data.getRedis);
    }

    async transaction(commands) {
      const texts = commands.map(utf8Texts);
      if (texts.some((t) => t === null)) return error("ERR GraphQL strings carry only UTF-8 text");
      return this.putRedis(texts);
    }

    async docs() {
      const replies = await this.putRedis([["COMMAND", "DOCS"]]);
      return replies.type === "array" ? replies.value[0] : replies;
    }
  }

  module.exports = { ConnectionError, GatewayTransport, AppSyncTransport, addressOf,
                     binaryRequest, jsonToTyped, stringsToTyped, utf8Texts };
  if (namespace) namespace.transport = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}),
   typeof require === "function" ? require("./sse.js") : globalThis.RedisConsole.sse);
