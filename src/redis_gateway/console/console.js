/* console.js: the page. Everything redis-cli-like is in the DOM-free scripts loaded before
 * this one (RedisConsole.cli, .help, .transport, .session, .settings); this file only
 * connects them to the form, the screen and the keyboard.
 */
(function () {
  "use strict";

  const { session: sessionModule, transport, settings } = globalThis.RedisConsole;
  const $ = (id) => document.getElementById(id);
  const ui = {
    status: $("status"), theme: $("theme"), themeName: $("theme-name"),
    panel: $("connection"), form: $("settings"), url: $("url"), urlLabel: $("url-label"),
    urlHelp: $("url-help"), token: $("token"), tokenLabel: $("token-label"),
    protocol: $("protocol"), protocolField: $("protocol-field"), remember: $("remember"),
    forget: $("forget"), screen: $("screen"), output: $("output"), prompt: $("prompt"),
    input: $("input"), ghostTyped: $("ghost-typed"), hint: $("hint"), hintText: $("hint-text"),
  };
  const MAX_BLOCKS = 5000; // scrollback, in echoed lines and replies

  // Storage can be refused (privacy settings, some file:// setups): fall back to memory.
  function storage(name) {
    try {
      const s = window[name];
      s.setItem("redis-console.probe", "1");
      s.removeItem("redis-console.probe");
      return s;
    } catch {
      const data = new Map();
      return { getItem: (k) => (data.has(k) ? data.get(k) : null),
               setItem: (k, v) => data.set(k, String(v)), removeItem: (k) => data.delete(k) };
    }
  }
  const local = storage("localStorage");
  const tab = storage("sessionStorage");
  const history = new settings.History(local);
  let session = new sessionModule.Session({ hints: hintsPreference() });
  let busy = false;
  let completion = null; // {original, candidates, index} while Tab cycles
  let attempts = 0; // connections started: a slow, older one must not report over a newer

  // ---------------------------------------------------------------------------------
  // Screen

  function append(className, text) {
    const span = document.createElement("span");
    span.className = className;
    // A terminal shows CR LF (INFO's line ends) as one line break; so does the screen.
    span.textContent = text.replace(/\r\n/g, "\n");
    ui.output.append(span);
    while (ui.output.childNodes.length > MAX_BLOCKS) ui.output.firstChild.remove();
    ui.screen.scrollTop = ui.screen.scrollHeight;
  }

  function write(text) {
    if (text) append("reply", text);
  }

  function echo(line) {
    // Raw replies (INFO …) may not end with a newline; the next prompt starts a new line.
    const last = ui.output.lastChild;
    const broken = last && !last.textContent.endsWith("\n");
    append("echo", (broken ? "\n" : "") + session.prompt + line + "\n");
  }

  function clearScreen() {
    ui.output.replaceChildren();
  }

  function refreshPrompt() {
    ui.prompt.textContent = session.prompt;
  }

  function setStatus(text) {
    ui.status.textContent = text;
  }

  // ---------------------------------------------------------------------------------
  // Typing: hints, completion, history

  function refreshHint() {
    const value = ui.input.value;
    const hint = (ui.input.scrollLeft === 0 && session.hint(value)) || "";
    ui.ghostTyped.textContent = value;
    ui.hint.textContent = hint;
    ui.hintText.textContent = hint ? `Arguments: ${hint.trim()}` : "";
  }

  function setInput(value) {
    ui.input.value = value;
    ui.input.setSelectionRange(value.length, value.length);
    refreshHint();
  }

  /**
   * Tab: the next completion, then the line as typed again; false when there is none.
   * Unlike redis-cli, an empty line completes nothing, so that Tab can leave the field.
   */
  function complete() {
    if (!completion) {
      if (!ui.input.value.trim()) return false;
      const candidates = session.completions(ui.input.value);
      if (candidates.length === 0) return false;
      completion = { original: ui.input.value, candidates, index: -1 };
    }
    const { candidates } = completion;
    completion.index = (completion.index + 1) % (candidates.length + 1);
    setInput(completion.index === candidates.length ? completion.original
      : candidates[completion.index]);
    return true;
  }

  async function submit() {
    const line = ui.input.value;
    history.reset();
    echo(line);
    setInput("");
    busy = true;
    ui.screen.setAttribute("aria-busy", "true");
    try {
      await session.execute(line, {
        write,
        remember: (l) => history.add(l),
        clear: clearScreen,
        exit: disconnect,
        connect: reconnect,
      });
    } catch (err) {
      write(`console error: ${err.message}\n`);
    } finally {
      // ":set hints" lasts across reloads, as it would in ~/.redisclirc.
      if (session.hintsOn !== hintsPreference()) {
        local.setItem(settings.KEYS.hints, JSON.stringify(session.hintsOn));
      }
      busy = false;
      ui.screen.removeAttribute("aria-busy");
      refreshPrompt();
      refreshHint();
    }
  }

  function selectionText() {
    const selection = window.getSelection();
    return selection ? selection.toString() : "";
  }

  ui.input.addEventListener("keydown", (event) => {
    const { key } = event;
    if (key === "Tab" && !event.shiftKey && !event.ctrlKey && !event.altKey && !event.metaKey) {
      // With nothing to complete, Tab moves the focus as usual: no keyboard trap.
      if (complete()) event.preventDefault();
      return;
    }
    if (key === "Escape" && completion) {
      event.preventDefault();
      setInput(completion.original);
      completion = null;
      return;
    }
    if (key !== "Shift") completion = null;
    if (key === "Enter") {
      event.preventDefault();
      if (!busy) submit();
    } else if (key === "ArrowUp" || key === "ArrowDown") {
      event.preventDefault();
      const line = key === "ArrowUp" ? history.previous(ui.input.value) : history.next();
      if (line !== null) setInput(line);
    } else if (event.ctrlKey && (key === "l" || key === "L")) {
      event.preventDefault();
      clearScreen();
    } else if (event.ctrlKey && (key === "c" || key === "C") && !selectionText() &&
               ui.input.selectionStart === ui.input.selectionEnd) {
      // Ctrl-C with nothing selected: stop a repeat, or drop the line as a terminal does.
      event.preventDefault();
      if (busy) {
        session.cancel();
      } else {
        append("echo", session.prompt + ui.input.value + "^C\n");
        setInput("");
      }
    }
  });
  ui.input.addEventListener("input", () => {
    completion = null;
    history.reset();
    refreshHint();
  });
  ui.input.addEventListener("scroll", refreshHint);

  // A click on the screen types at the prompt, unless it selected text to copy.
  ui.screen.addEventListener("click", () => {
    if (!selectionText()) ui.input.focus();
  });

  // ---------------------------------------------------------------------------------
  // Connection

  /** Where the page was served from: the gateway's base URL (before /console/). */
  function servedFrom() {
    if (!/^https?:$/.test(location.protocol)) return "";
    return location.origin + location.pathname.replace(/\/console(\/.*)?$/, "");
  }

  function defaultUrl(mode) {
    const base = servedFrom();
    return base && mode === "appsync" ? base + "/graphql" : base;
  }

  function mode() {
    return ui.form.querySelector("input[name=mode]:checked").value;
  }

  function showMode() {
    const appsync = mode() === "appsync";
    ui.urlLabel.textContent = appsync ? "GraphQL endpoint" : "Gateway URL";
    ui.urlHelp.textContent = appsync
      ? "The AppSync (or gateway /graphql) endpoint, " +
        "e.g. https://….appsync-api.….amazonaws.com/graphql"
      : "The gateway's base URL, with its base path if it has one.";
    ui.tokenLabel.textContent = appsync ? "API key" : "Token";
    ui.protocolField.hidden = appsync; // AppSync replies are strings: no RESP choice
  }

  function readForm() {
    return { mode: mode(), url: ui.url.value.trim(), token: ui.token.value,
             protocol: Number(ui.protocol.value), remember: ui.remember.checked };
  }

  function fillForm(conn) {
    ui.form.querySelector(`input[name=mode][value=${conn.mode}]`).checked = true;
    ui.url.value = conn.url || defaultUrl(conn.mode);
    ui.token.value = conn.token;
    ui.protocol.value = String(conn.protocol);
    ui.remember.checked = conn.remember;
    showMode();
  }

  function makeTransport(conn) {
    return conn.mode === "appsync"
      ? new transport.AppSyncTransport({ url: conn.url, apiKey: conn.token })
      : new transport.GatewayTransport({ url: conn.url, token: conn.token });
  }

  async function connect(conn) {
    let link;
    try {
      link = makeTransport(conn);
    } catch {
      setStatus(`Not connected: "${conn.url}" is not a URL.`);
      return;
    }
    const attempt = ++attempts;
    const current = new sessionModule.Session({ transport: link, protocol: conn.protocol,
                                                hints: hintsPreference() });
    session = current;
    refreshPrompt();
    setStatus(`Connecting to ${link.address}…`);
    const problem = await current.check();
    if (attempt !== attempts) return;
    refreshPrompt();
    if (problem) {
      const secret = conn.mode === "appsync" ? "API key" : "token";
      setStatus(problem.status === 401 || problem.status === 403
        ? `The ${secret} was refused (${problem.status}): ${problem.value}` : problem.value);
      return;
    }
    const where = `Connected to ${link.address}` +
      (conn.mode === "appsync" ? " (AppSync)" : ` (RESP${conn.protocol})`);
    ui.panel.open = false; // the screen gets the room; the settings are one key away
    setStatus(`${where}. Loading command help…`);
    const docs = await current.loadDocs();
    if (attempt !== attempts) return;
    setStatus(docs ? `${where}.` : `${where}. No hints or help: ${current.docsProblem}`);
    refreshHint();
  }

  ui.form.addEventListener("submit", (event) => {
    event.preventDefault();
    const conn = readForm();
    if (!conn.url) {
      setStatus("Enter the URL to connect to.");
      ui.url.focus();
      return;
    }
    settings.saveConnection(local, tab, conn);
    ui.input.focus();
    connect(conn);
  });

  ui.form.addEventListener("change", (event) => {
    if (event.target.name !== "mode") return;
    const other = mode() === "appsync" ? "gateway" : "appsync";
    if (!ui.url.value || ui.url.value === defaultUrl(other)) ui.url.value = defaultUrl(mode());
    showMode();
  });

  ui.forget.addEventListener("click", () => {
    settings.forgetToken(local, tab);
    ui.token.value = "";
    setStatus("The token is forgotten: this browser no longer keeps it.");
  });

  /** quit / exit: the console stays, disconnected, with the settings open. */
  function disconnect() {
    attempts++;
    session = new sessionModule.Session({ hints: hintsPreference() });
    setStatus("Disconnected.");
    ui.panel.open = true;
    ui.url.focus();
  }

  /** connect host port: the same settings, another address. */
  function reconnect(host, port) {
    const conn = readForm();
    try {
      const url = new URL(conn.url);
      url.hostname = host;
      url.port = port;
      conn.url = url.href.replace(/\/$/, "");
    } catch {
      write(`Could not connect to ${host}:${port}: not a valid address\n`);
      return;
    }
    ui.url.value = conn.url;
    settings.saveConnection(local, tab, conn);
    connect(conn).then(() => {
      if (!session.connected) write(`${ui.status.textContent}\n`);
    });
  }

  // ---------------------------------------------------------------------------------
  // Preferences

  function hintsPreference() {
    return settings.readJson(local, settings.KEYS.hints, true) !== false;
  }

  const THEMES = ["system", "dark", "light"];

  function applyTheme(name) {
    if (name === "system") delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = name;
    ui.theme.textContent = `Theme: ${name}`;
    ui.themeName.textContent = name === "system" ? "follows the system" : name;
  }

  ui.theme.addEventListener("click", () => {
    const current = settings.readJson(local, settings.KEYS.theme, "system");
    const next = THEMES[(THEMES.indexOf(current) + 1) % THEMES.length];
    local.setItem(settings.KEYS.theme, JSON.stringify(next));
    applyTheme(next);
  });

  // ---------------------------------------------------------------------------------
  // Start

  applyTheme(settings.readJson(local, settings.KEYS.theme, "system"));
  const saved = settings.loadConnection(local, tab);
  fillForm(saved);
  refreshPrompt();
  if (saved.token && (saved.url || defaultUrl(saved.mode))) {
    connect({ ...saved, url: saved.url || defaultUrl(saved.mode) });
    ui.input.focus();
  } else {
    ui.panel.open = true;
    (ui.url.value ? ui.token : ui.url).focus();
  }
})();
