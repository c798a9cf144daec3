/* session.js: the REPL of the console, with no DOM: one typed line in, text out.
 *
 * new Session({transport, protocol, hints}) runs lines the way redis-cli's repl() does
 * (redis-cli.js), sends commands through a transport (transport.js), and keeps what a
 * connection keeps: the MULTI queue, whether the gateway answered, the help table.
 *
 * execute(line, out) writes text with out.write(text) as replies arrive, and asks the
 * page for the rest: out.remember(line) (add it to the history, unless it holds a
 * password), out.clear() (clear), out.exit() (quit, exit), out.connect(host, port)
 * (connect host port).
 *
 * A classic script for the same reason as redis-cli.js (see there): `RedisConsole.session`.
 */
(function (module, namespace, cli, help, transportModule) {
  "use strict";

  const { ConnectionError } = transportModule;

  // Commands that stream replies until Ctrl-C: sent through transport.stream().
  const STREAMING = new Set(["subscribe", "psubscribe", "ssubscribe", "monitor"]);
  const PUBSUB_BANNER = "Reading messages... (press Ctrl-C to quit)\n";

  const arityError = (name) => ({ type: "error",
                                  value: `ERR wrong number of arguments for '${name}' command` });

  class Session {
    constructor({ transport = null, protocol = 2, hints = true,
                  now = () => globalThis.performance.now() } = {}) {
      this.transport = transport;
      this.protocol = protocol;
      this.hintsOn = hints;
      this.now = now;
      this.connected = transport !== null;
      this.queue = null; // the commands queued since MULTI, or null outside a transaction
      this.queueFailed = false; // a command refused while queueing: EXEC will abort
      this.entries = []; // the help table, once COMMAND DOCS has answered
      this.docsProblem = null;
      this.cancelled = false;
      this.streaming = null; // the AbortController of a running SUBSCRIBE or MONITOR
    }

    get prompt() {
      return cli.formatPrompt({ address: this.transport && this.transport.address,
                                transaction: this.queue !== null, connected: this.connected });
    }

    get inTransaction() {
      return this.queue !== null;
    }

    /** A PING that is not printed, to check the address and the token: null when fine. */
    async check() {
      try {
        const reply = await this.transport.command([cli.toBytes("PING")], this.protocol);
        this.connected = true;
        return reply.type === "error" ? reply : null;
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err;
        this.connected = false;
        return { type: "error", value: this.unreachable(err) };
      }
    }

    unreachable(err) {
      // As redis-cli's "Could not connect to Redis at host:port: Connection refused".
      const what = this.transport.name || "redis-gateway";
      return `Could not connect to ${what} at ${this.transport.address}: ${err.message}`;
    }

    /** Reads COMMAND DOCS for help, hints and completion; false (and why) when refused. */
    async loadDocs() {
      try {
        const reply = await this.transport.docs();
        if (reply.type === "error") throw new Error(reply.value);
        this.entries = help.entriesFromDocs(reply);
        this.docsProblem = null;
        return true;
      } catch (err) {
        this.entries = [];
        this.docsProblem = err.message;
        return false;
      }
    }

    /** The grey hint after the typed line, or null. */
    hint(line) {
      if (!this.hintsOn || this.entries.length === 0) return null;
      const args = cli.splitArgs(line);
      if (!args) return null;
      return help.hint(this.entries, args.map(cli.bytesToText), /[ \t\n\v\f\r]$/.test(line));
    }

    completions(line) {
      return help.completions(this.entries, line);
    }

    /** Stops a running repeat ("1000 PING") after the reply being waited for, or a
     * SUBSCRIBE / MONITOR at once. */
    cancel() {
      this.cancelled = true;
      if (this.streaming) this.streaming.abort();
    }

    async execute(line, out) {
      const action = cli.interpret(cli.splitArgs(line));
      if (action.history) out.remember(line);
      switch (action.kind) {
        case "empty": return;
        case "print": out.write(action.text); return;
        case "exit": this.queue = null; out.exit(); return;
        case "hints": this.hintsOn = action.on; return;
        case "clear": out.clear(); return;
        case "connect": out.connect(action.host, action.port); return;
        case "help": out.write(this.helpText(action.topic)); return;
        default: await this.send(action.args, action.repeat, out);
      }
    }

    helpText(topic) {
      if (topic.length > 0 && this.entries.length === 0) {
        const why = this.docsProblem || "not connected";
        return `No help available: COMMAND DOCS did not answer (${why}).\n`;
      }
      return help.helpText(this.entries, topic);
    }

    async send(args, repeat, out) {
      const name = cli.lowerName(args[0]);
      if (!this.transport) {
        out.write("Not connected: fill in the connection settings first.\n");
        return;
      }
      if (STREAMING.has(name) && !this.queue) {
        await this.stream(name, args, out);
        return;
      }
      const started = this.now();
      this.cancelled = false;
      for (let i = 0; i < repeat && !this.cancelled; i++) {
        let reply;
        try {
          reply = await this.one(name, args);
        } catch (err) {
          if (!(err instanceof ConnectionError)) throw err;
          this.connected = false; // redis-cli's "not connected> " until a command gets through
          out.write(this.unreachable(err) + "\n");
          return;
        }
        out.write(cli.formatReply(reply, args)); // each reply as it arrives
      }
      out.write(cli.formatElapsed(this.now() - started));
    }

    /**
     * SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE, MONITOR as redis-cli runs them: the banner for
     * pub/sub, then every reply as it arrives (the confirmations, then the messages),
     * until Ctrl-C (cancel()) or an error reply, which redis-cli prints and stops at.
     */
    async stream(name, args, out) {
      if (typeof this.transport.stream !== "function") {
        out.write(`${name.toUpperCase()} streams its replies, and ${this.transport.name} ` +
                  "cannot stream them: this is not available here.\n");
        return;
      }
      if (name !== "monitor") out.write(PUBSUB_BANNER);
      const controller = new AbortController();
      this.streaming = controller;
      try {
        await this.transport.stream(args, this.protocol, (reply) => {
          if (controller.signal.aborted) return;
          this.connected = true;
          out.write(cli.formatReply(reply, args));
          if (reply.type === "error") controller.abort();
        }, controller.signal);
      } catch (err) {
        if (!(err instanceof ConnectionError)) throw err;
        this.connected = false;
        out.write(this.unreachable(err) + "\n");
      } finally {
        this.streaming = null;
      }
    }

    /** One command: MULTI/EXEC/DISCARD and queueing are the console's own. */
    async one(name, args) {
      if (name === "multi") {
        if (args.length !== 1) return this.refuseInQueue(arityError("multi"));
        // Like WATCH below, this error does not make EXEC abort (Redis runs it, not queues it).
        if (this.queue) return { type: "error", value: "ERR MULTI calls can not be nested" };
        this.queue = [];
        this.queueFailed = false;
        return { type: "status", value: "OK" };
      }
      if (name === "exec" || name === "discard") {
        if (args.length !== 1) return this.refuseInQueue(arityError(name));
        if (!this.queue) return { type: "error", value: `ERR ${name.toUpperCase()} without MULTI` };
        const [queue, failed] = [this.queue, this.queueFailed];
        this.queue = null;
        if (name === "discard") return { type: "status", value: "OK" };
        if (failed) {
          return { type: "error",
                   value: "EXECABORT Transaction discarded because of previous errors." };
        }
        if (queue.length === 0) return { type: "array", value: [] };
        return this.call(() => this.transport.transaction(queue, this.protocol));
      }
      if (this.queue) {
        if (name === "watch") {
          return { type: "error", value: "ERR WATCH inside MULTI is not allowed" };
        }
        this.queue.push(args);
        return { type: "status", value: "QUEUED" };
      }
      return this.call(() => this.transport.command(args, this.protocol));
    }

    /** A command Redis would reject while queueing (arity) makes EXEC abort. */
    refuseInQueue(reply) {
      if (this.queue) this.queueFailed = true;
      return reply;
    }

    async call(request) {
      const reply = await request(); // a ConnectionError goes up to send()
      this.connected = true;
      return reply;
    }
  }

  module.exports = { Session, STREAMING, PUBSUB_BANNER };
  if (namespace) namespace.session = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}),
   ...(typeof require === "function"
     ? [require("./redis-cli.js"), require("./help.js"), require("./transport.js")]
     : [globalThis.RedisConsole.cli, globalThis.RedisConsole.help,
        globalThis.RedisConsole.transport]));
