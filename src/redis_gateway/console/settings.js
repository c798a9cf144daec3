/* settings.js: what the console keeps in the browser, with no DOM: connection settings,
 * the token, preferences and the command history. The storages are passed in (the page
 * gives localStorage and sessionStorage), so that this is testable without a browser.
 *
 * The token is kept in session storage (this tab only, gone when it closes) unless the
 * user ticks "remember", then in local storage; never both, never in the URL.
 *
 * A classic script for the same reason as redis-cli.js (see there): `RedisConsole.settings`.
 */
(function (module, namespace) {
  "use strict";

  const KEYS = Object.freeze({
    connection: "redis-console.connection", // {mode, url, protocol, remember}: not secret
    token: "redis-console.token",
    history: "redis-console.history",
    theme: "redis-console.theme",
    hints: "redis-console.hints",
  });

  function readJson(storage, key, fallback) {
    try {
      const value = JSON.parse(storage.getItem(key));
      return value === null ? fallback : value;
    } catch {
      return fallback;
    }
  }

  /** {mode, url, protocol, remember, token}; url is "" when never set. */
  function loadConnection(local, session) {
    const saved = readJson(local, KEYS.connection, {});
    return {
      mode: saved.mode === "appsync" ? "appsync" : "gateway",
      url: typeof saved.url === "string" ? saved.url : "",
      protocol: saved.protocol === 3 ? 3 : 2,
      remember: saved.remember === true,
      token: session.getItem(KEYS.token) ?? local.getItem(KEYS.token) ?? "",
    };
  }

  function saveConnection(local, session, { mode, url, protocol, remember, token }) {
    local.setItem(KEYS.connection, JSON.stringify({ mode, url, protocol, remember }));
    const [keep, drop] = remember ? [local, session] : [session, local];
    drop.removeItem(KEYS.token);
    if (token) keep.setItem(KEYS.token, token);
    else keep.removeItem(KEYS.token);
  }

  function forgetToken(local, session) {
    local.removeItem(KEYS.token);
    session.removeItem(KEYS.token);
  }

  /**
   * The history as linenoise keeps it: at most `limit` lines (linenoise's default is 100),
   * a line equal to the previous one is not added again; up/down walk it, and the line
   * being typed is kept while walking. Which lines to add is the REPL's business
   * (redis-cli.js interpret(): not empty lines, nor commands holding a password).
   */
  class History {
    constructor(storage, limit = 100) {
      this.storage = storage;
      this.limit = limit;
      const lines = readJson(storage, KEYS.history, []);
      this.lines = Array.isArray(lines)
        ? lines.filter((l) => typeof l === "string").slice(-limit) : [];
      this.reset();
    }

    add(line) {
      if (line && this.lines[this.lines.length - 1] !== line) {
        this.lines = [...this.lines, line].slice(-this.limit);
        try {
          this.storage.setItem(KEYS.history, JSON.stringify(this.lines));
        } catch {
          // storage full or denied: the history still works for this page
        }
      }
      this.reset();
    }

    /** Leaves browsing: the next up starts from the newest line. */
    reset() {
      this.index = this.lines.length;
      this.draft = null;
    }

    /** The line for the up key, given what is typed now; null at the oldest. */
    previous(current) {
      if (this.index === 0) return null;
      if (this.index === this.lines.length) this.draft = current;
      this.index--;
      return this.lines[this.index];
    }

    /** The line for the down key; back to what was being typed after the newest. */
    next() {
      if (this.index >= this.lines.length) return null;
      this.index++;
      return this.index === this.lines.length ? (this.draft ?? "") : this.lines[this.index];
    }
  }

  module.exports = { KEYS, loadConnection, saveConnection, forgetToken, readJson, History };
  if (namespace) namespace.settings = module.exports;
})(typeof module === "object" && module ? module : {},
   typeof module === "object" && module ? null : (globalThis.RedisConsole ||= {}));
