"""The web console (/console/): its parser and formatter against the real redis-cli, and the
page itself in headless Chromium.

The console's logic is JavaScript with no DOM (src/redis_gateway/console/*.js), unit-tested
by ``node --test tests/console/``, which this module runs too. Here the same code runs
against a real redis-server through a real gateway, and its output is compared byte for
byte with what ``redis-cli`` 7 prints for the same commands on the same server. Setting
``RG_CAPTURE_CONSOLE_FIXTURES=1`` also rewrites tests/console/fixtures/captured.json, the
replies and redis-cli outputs the node unit tests check without a server.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import select
import shutil
import struct
import subprocess
import termios
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from support import GatewayProcess, RedisServer, free_port, numsub, redis_command, scratch_dir

CONSOLE_TESTS = Path(__file__).parent / "console"
FIXTURES = CONSOLE_TESTS / "fixtures" / "captured.json"
NODE = shutil.which("node")
REDIS_CLI = shutil.which("redis-cli")

needs_node = pytest.mark.skipif(NODE is None, reason="node is needed for the console's tests")
needs_cli = pytest.mark.skipif(REDIS_CLI is None, reason="redis-cli is needed to compare with")


@pytest.fixture(scope="module")
def stack() -> Iterator[tuple[RedisServer, GatewayProcess]]:
    """A Redis of its own (the INFO and COMMAND replies compared must not move) and a gateway."""
    redis = RedisServer().start()
    gateway = GatewayProcess(redis.url, rules={
        "admin": "admin",
        "nodocs": "+@all -command allkeys allchannels",
        "nochannels": "+@all allkeys",
    }).start()
    yield redis, gateway
    gateway.stop()
    redis.close()


@pytest.fixture(scope="module")
def redis(stack: tuple[RedisServer, GatewayProcess]) -> RedisServer:
    return stack[0]


@pytest.fixture(scope="module")
def gw(stack: tuple[RedisServer, GatewayProcess]) -> GatewayProcess:
    return stack[1]


def node(*args: str, stdin: Any = None) -> Any:
    """Runs tests/console/bridge.mjs: JSON in, JSON out."""
    assert NODE
    done = subprocess.run([NODE, str(CONSOLE_TESTS / "bridge.mjs"), *args],
                          input=json.dumps(stdin).encode(), capture_output=True, timeout=60)
    assert done.returncode == 0, done.stderr.decode()
    return json.loads(done.stdout)


def typed(gateway: GatewayProcess, protocol: int, argv: list[str]) -> dict[str, Any]:
    """The gateway's typed reply; a refusal becomes a typed error, as the console shows it."""
    with gateway.client() as client:
        response = client.post("/", json=argv,
                               headers={"Redis-Reply-Format": f"typed-resp{protocol}"})
    body = response.json()
    if "error" in body:
        return {"type": "error", "value": body["error"]}
    result: dict[str, Any] = body["result"]
    return result


def redis_cli(redis: RedisServer, protocol: int, argv: list[str]) -> str:
    """What redis-cli prints, TTY formatting forced (--no-raw), stderr after stdout."""
    assert REDIS_CLI
    flags = ["-3"] if protocol == 3 else []
    done = subprocess.run([REDIS_CLI, "-p", str(redis.port), "--no-raw", *flags, *argv],
                          capture_output=True, timeout=10)
    return (done.stdout + done.stderr).decode("utf-8", "replace")


# ---------------------------------------------------------------------------------------
# The formatter against redis-cli, reply by reply

SETUP = [
    ["SET", "c:s", "hello world"],
    ["RPUSH", "c:l", *[f"item{i}" for i in range(1, 13)]],
    ["RPUSH", "c:big", *[str(i) for i in range(1, 106)]],
    ["HSET", "c:h", "f1", "v1", "f2", "v2"],
    ["SADD", "c:set", "a"],
    ["ZADD", "c:z", "1.5", "a", "2", "b"],
    ["XADD", "c:x", "1-1", "f", "v"],
    ["XADD", "c:x", "2-0", "name", "x y"],
    ["GEOADD", "c:geo", "13.361389", "38.115556", "Palermo", "15.087269", "37.502669",
     "Catania"],
]

# Commands whose replies do not change when run twice, covering every reply type and the
# spec's examples; each is run under RESP2 and RESP3.
REPLIES = [
    ["PING"], ["GET", "c:s"], ["GET", "c:missing"], ["GET", "c:bin"], ["ECHO", ""],
    ["ECHO", "é€ \\ \" \t\x07\x0b\x7f"], ["SET", "c:t", "v"], ["DEL", "c:none"], ["TYPE", "c:s"],
    ["LRANGE", "c:l", "0", "8"], ["LRANGE", "c:l", "0", "-1"], ["LRANGE", "c:big", "0", "-1"],
    ["LRANGE", "c:missing", "0", "-1"], ["HGETALL", "c:h"], ["HGETALL", "c:missing"],
    ["SMEMBERS", "c:set"], ["ZSCORE", "c:z", "a"], ["ZRANGE", "c:z", "0", "-1", "WITHSCORES"],
    ["GEODIST", "c:geo", "Palermo", "Catania"], ["XRANGE", "c:x", "-", "+"],
    ["XINFO", "STREAM", "c:x", "FULL"], ["COMMAND", "INFO", "get"],
    ["CONFIG", "GET", "maxmemory-policy"],
    ["EVAL", "return {1,2,{3,'x'},{err='bad'}}", "0"],
    ["EVAL", "return {1,{2,{3,{4}}},{},'x'}", "0"],
    ["EVAL", "redis.setresp(3); return {double=3.14}", "0"],
    ["EVAL", "redis.setresp(3); return {double=1/0}", "0"],
    ["EVAL", "redis.setresp(3); return {double=-1/0}", "0"],
    ["EVAL", "redis.setresp(3); return {double=0/0}", "0"],
    ["EVAL", "redis.setresp(3); return {double=1e20}", "0"],
    ["EVAL", "redis.setresp(3); return {double=0.1}", "0"],
    ["EVAL", "redis.setresp(3); return {big_number='123456789012345678901234567890'}", "0"],
    ["EVAL", "redis.setresp(3); return {map={a=1}}", "0"],
    ["EVAL", "redis.setresp(3); return {set={x=true}}", "0"],
    ["EVAL", "return true", "0"], ["EVAL", "return false", "0"],
    # Not "redis.setresp(3); return false": the gateway's RESP3 reader mistakes #f for
    # "more data needed" and the request times out (reported; formatted in the unit tests).
    ["EVAL", "redis.setresp(3); return true", "0"],
    ["EVAL", "return redis.error_reply('MYERR custom')", "0"],
    ["EVAL", "return redis.status_reply('FINE')", "0"],
    ["HSET", "c:h", "f1"],  # an arity error
    ["INFO", "keyspace"], ["CLUSTER", "INFO"], ["CLUSTER", "INFO", "extra"],
    ["LATENCY", "DOCTOR"], ["LATENCY", "DOCTOR", "extra"], ["DEBUG", "HTSTATS", "0"],
    ["MEMORY", "DOCTOR"],
]


def captured_replies(redis: RedisServer, gateway: GatewayProcess) -> list[dict[str, Any]]:
    with gateway.client() as client:
        for argv in SETUP:
            client.post("/", json=argv)
        client.post("/set/c:bin", content=b"\xff\x00caf\xc3\xa9\n\"")
    cases = []
    for protocol in (2, 3):
        for argv in REPLIES:
            cases.append({"protocol": protocol, "argv": argv,
                          "reply": typed(gateway, protocol, argv),
                          "redis_cli": redis_cli(redis, protocol, argv)})
    return cases


@needs_node
@needs_cli
def test_replies_print_as_redis_cli_prints_them(redis: RedisServer,
                                                gw: GatewayProcess) -> None:
    cases = captured_replies(redis, gw)
    printed = node("format", stdin=[{"reply": c["reply"], "argv": c["argv"]} for c in cases])
    mismatches = [(c["protocol"], c["argv"], c["redis_cli"], text)
                  for c, text in zip(cases, printed, strict=True) if text != c["redis_cli"]]
    assert not mismatches, "\n".join(f"RESP{p} {argv}:\n  redis-cli {cli!r}\n  console   {ours!r}"
                                     for p, argv, cli, ours in mismatches)
    if os.environ.get("RG_CAPTURE_CONSOLE_FIXTURES"):
        write_fixtures(redis, gw, cases)


# ---------------------------------------------------------------------------------------
# The REPL against redis-cli, line by line


class InteractiveCli:
    """The real redis-cli in a pseudo-terminal: type a line, read up to the next prompt."""

    def __init__(self, port: int, *flags: str) -> None:
        self.prompt = re.compile(rb"127\.0\.0\.1:%d(\[\d+\])?(\(TX\))?> $" % port)
        home = str(scratch_dir("rg-cli-home-"))  # its own history file
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # pragma: no cover - the child
            os.environ.update(TERM="dumb", HOME=home)
            os.execvp("redis-cli", ["redis-cli", "-p", str(port), *flags])
        fcntl.ioctl(self.fd, termios.TIOCSWINSZ, struct.pack("HHHH", 50, 1000, 0, 0))
        self._read()

    def _read(self) -> bytes:
        out = b""
        deadline = time.monotonic() + 10
        while not self.prompt.search(out):
            if time.monotonic() > deadline:
                raise TimeoutError(out)
            if select.select([self.fd], [], [], 0.05)[0]:
                out += os.read(self.fd, 65536)
        return out

    def run(self, line: str) -> str:
        """What redis-cli printed for the line: its echo, colours and prompt removed.

        The terminal turns every LF into CR LF; both that and a CR LF the server sent
        (INFO's line ends) come back as LF.
        """
        os.write(self.fd, line.encode() + b"\r")
        out = self._read().replace(b"\r\r\n", b"\n").replace(b"\r\n", b"\n")
        out = re.sub(rb"\x1b\[[0-9;]*m", b"", out)
        out = out[out.index(b"\n") + 1:]  # the echoed line
        return out[:self.prompt.search(out).start()].decode()  # type: ignore[union-attr]

    def close(self) -> None:
        os.close(self.fd)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)


# Typed lines: the spec's splitting and REPL tables, local commands, help, transactions.
LINES = [
    "DEL c:n", 'SET c:q "hello world"', "GET c:q", 'ECHO "a\\"b\\\\c"', 'ECHO "\\x00\\xff"',
    "ECHO 'it\\'s'", "ECHO 'a\\nb'", 'ECHO ""', "ECHO é", 'ECHO "x"y', 'ECHO "open',
    'foo"bar baz"', "ECHO a\\ b", 'ECHO "\\xZZ" "\\x4" "\\X41" "\\q"', "", "   ",
    "3 INCR c:n", "+2 PING", '" 2" PING', '"" PING', "0 PING", "-1 PING",
    ":set foo", ":set hints", ":SET", ":x", "restart", "help set", "help config get",
    "help @hyperloglog", "help nosuch", "? get", "2 help get", "HGETALL c:h",
    "LRANGE c:l 0 -1", "ZRANGE c:z 0 -1 WITHSCORES",
    "EVAL \"return {1,2,{3,'x'},{err='bad'}}\" 0", "MULTI", "INCR c:n", "2 INCR c:n",
    "EXEC", "MULTI", "SET c:n 0", "DISCARD", "EXEC", "DISCARD", "GET c:n",
    "info keyspace", "cluster info", "DEL c:n",  # the next run starts without c:n too
]


@needs_node
@needs_cli
@pytest.mark.parametrize("protocol", [2, 3])
def test_lines_run_as_in_redis_cli(redis: RedisServer, gw: GatewayProcess,
                                   protocol: int) -> None:
    cli = InteractiveCli(redis.port, *(["-3"] if protocol == 3 else []))
    try:
        expected = [cli.run(line) for line in LINES]
    finally:
        cli.close()
    printed = node("repl", gw.url, gw.tokens["admin"], str(protocol), stdin=LINES)
    # Through a terminal, INFO's CR LF and a plain LF look the same (see InteractiveCli.run).
    printed = [text.replace("\r\n", "\n") for text in printed]
    mismatches = [(line, want, got) for line, want, got in zip(LINES, expected, printed,
                                                                strict=True) if want != got]
    assert not mismatches, "\n".join(f"{line!r}:\n  redis-cli {want!r}\n  console   {got!r}"
                                     for line, want, got in mismatches)


@needs_node
@needs_cli
def test_unknown_command_error_as_redis_cli(redis: RedisServer, gw: GatewayProcess) -> None:
    lines = ["FOOé x", "0x10 PING", "3"]
    cli = InteractiveCli(redis.port)
    try:
        expected = [cli.run(line) for line in lines]
    finally:
        cli.close()
    assert node("repl", gw.url, gw.tokens["admin"], "2", stdin=lines) == expected


# ---------------------------------------------------------------------------------------
# Fixtures for the node unit tests

HELP_COMMANDS = ["set", "get", "config", "migrate", "xadd", "zadd", "mset", "hello", "pfadd",
                 "pfcount", "pfdebug", "pfmerge", "pfselftest"]
HELP_TOPICS = [["set"], ["config", "get"], ["config"], ["@hyperloglog"], ["nosuch"],
               ["MIGRATE"], ["@nosuch"], ["XADD"]]


def write_fixtures(redis: RedisServer, gateway: GatewayProcess,
                   cases: list[dict[str, Any]]) -> None:
    cli = InteractiveCli(redis.port)
    try:
        helps = [{"topic": t, "redis_cli": cli.run("help " + " ".join(t))} for t in HELP_TOPICS]
    finally:
        cli.close()
    docs = {f"resp{p}": typed(gateway, p, ["COMMAND", "DOCS", *HELP_COMMANDS]) for p in (2, 3)}
    version = re.search(r"redis_version:(\S+)", redis.cli("INFO", "server"))
    parts = {
        "about": "Captured by tests/test_console.py (RG_CAPTURE_CONSOLE_FIXTURES=1) from "
                 f"redis-server {version and version[1]} through the gateway, and redis-cli",
        "replies": cases, "help": helps, "docs": docs,
    }

    def dump(value: Any) -> str:
        return json.dumps(value, ensure_ascii=False)

    # One case per line: a diff shows which reply changed.
    FIXTURES.parent.mkdir(exist_ok=True)
    FIXTURES.write_text("{\n" + ",\n".join(
        f"{dump(key)}: " + ("[\n" + ",\n".join(dump(v) for v in value) + "\n]"
                            if isinstance(value, list) else dump(value))
        for key, value in parts.items()) + "\n}\n")


@needs_node
def test_node_unit_tests() -> None:
    """node --test tests/console/: every rule of the spec, without a server."""
    assert NODE
    done = subprocess.run([NODE, "--test", str(CONSOLE_TESTS)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]


# ---------------------------------------------------------------------------------------
# The page in headless Chromium (Debian's chromium, driven by Playwright)

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--headless", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).parent.parent / "test-artifacts"
DOCS_SCREENSHOT = Path(__file__).parent.parent / "docs" / "console.png"
CONSOLE_FILE = Path(__file__).parent.parent / "src" / "redis_gateway" / "console" / "index.html"

try:
    from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright
except ImportError:  # pragma: no cover - the test extra installs it
    sync_playwright = None  # type: ignore[assignment]

needs_browser = pytest.mark.skipif(sync_playwright is None or not Path(CHROMIUM).exists(),
                                   reason="needs the playwright package and Debian's chromium")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    """A fresh profile for each test: its own local and session storage."""
    ctx = browser.new_context(viewport={"width": 1000, "height": 640}, color_scheme="dark")
    ctx.set_default_timeout(10_000)
    yield ctx
    ctx.close()


class Console:
    """The page, as a user drives it; fails the test on any script error or CSP violation."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.problems: list[str] = []
        page.on("pageerror", lambda exc: self.problems.append(str(exc)))
        page.on("console", lambda msg: self.problems.append(msg.text)
                if msg.type == "error" and "Failed to load resource" not in msg.text else None)

    def open(self, url: str) -> Console:
        self.page.goto(url)
        return self

    def connect(self, url: str | None, token: str, *, appsync: bool = False,
                protocol: int = 2, remember: bool = False) -> None:
        page = self.page
        if page.locator("#connection").get_attribute("open") is None:
            page.click("#connection summary")
        if appsync:
            page.get_by_label("AppSync (GraphQL: getRedis / putRedis)").check()
        if url is not None:
            page.fill("#url", url)
        page.get_by_label("API key" if appsync else "Token", exact=True).fill(token)
        if not appsync:
            page.get_by_label("Protocol").select_option(str(protocol))
        page.get_by_label("Remember the token in this browser").set_checked(remember)
        page.get_by_role("button", name="Connect").click()
        self.wait_connected()

    def wait_connected(self) -> None:
        # Connected, and done reading COMMAND DOCS (or not allowed to).
        expect(self.page.locator("#status")).to_have_text(
            re.compile(r"^Connected to \S+ \([^)]*\)\.(?! Loading)"))

    def type(self, line: str) -> str:
        """Types the line, presses Enter, waits for the reply; returns what it printed."""
        page = self.page
        page.fill("#input", line)
        page.press("#input", "Enter")
        expect(page.locator("#screen")).not_to_have_attribute("aria-busy", "true")
        return self.last_reply()

    def blocks(self) -> list[tuple[str, str]]:
        return [(kind, text) for kind, text in self.page.eval_on_selector_all(
            "#output > span", "spans => spans.map(s => [s.className, s.textContent])")]

    def last_reply(self) -> str:
        blocks = self.blocks()
        last_echo = max((i for i, (kind, _) in enumerate(blocks) if kind == "echo"), default=-1)
        return "".join(text for _, text in blocks[last_echo + 1:])

    @property
    def prompt(self) -> str:
        return self.page.locator("#prompt").text_content() or ""

    @property
    def screen(self) -> str:
        return self.page.locator("#output").text_content() or ""

    def check_clean(self) -> None:
        assert not self.problems, self.problems


def screenshot(page: Page, name: str) -> None:
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / name))


# What the browser session types, compared with redis-cli on the same server.
SCREEN_LINES = ['SET c:e "hello world"', "GET c:e", 'ECHO "caf\\xc3\\xa9 \\x00\\xff"',
                "ECHO 'it\\'s'", "HGETALL c:h", "XRANGE c:x - +", "LRANGE c:l 0 -1",
                'ECHO "x"y', '"" PING', "2 PING", "GET", "info keyspace", "help get"]


@needs_browser
@needs_cli
def test_console_end_to_end(context: BrowserContext, redis: RedisServer,
                            gw: GatewayProcess) -> None:
    """Served by the gateway: connect, commands, screen text, hints, Tab, MULTI, history."""
    page = context.new_page()
    console = Console(page).open(gw.url + "/console")
    assert page.url == gw.url + "/console/"  # the redirect, for relative asset URLs
    assert page.locator("#url").input_value() == gw.url  # defaults to where it is served
    console.connect(None, gw.tokens["admin"])
    address = f"127.0.0.1:{gw.port}"
    assert console.prompt == f"{address}> "
    assert page.locator("#connection").get_attribute("open") is None  # folded once connected

    # The screen shows what redis-cli prints for the same lines.
    captured_replies(redis, gw)  # the keys
    cli = InteractiveCli(redis.port)
    try:
        expected = [cli.run(line) for line in SCREEN_LINES]
    finally:
        cli.close()
    for line, want in zip(SCREEN_LINES, expected, strict=True):
        assert console.type(line) == want, line  # the screen shows CR LF as LF, as a terminal
    assert f'{address}> SET c:e "hello world"\nOK\n{address}> GET c:e\n"hello world"\n' \
        in console.screen

    # Errors from the gateway and from Redis (streaming: test_console_streams_as_redis_cli).
    assert console.type("SELECT 1").startswith("(error) ERR SELECT is not available here")

    # MULTI / EXEC: queued in the page, sent to /multi-exec.
    assert console.type("MULTI") == "OK\n"
    assert console.prompt == f"{address}(TX)> "
    assert console.type("SET c:tx 1") == "QUEUED\n"
    assert console.type("INCR c:tx") == "QUEUED\n"
    assert console.type("EXEC") == "1) OK\n2) (integer) 2\n"
    assert console.prompt == f"{address}> "
    assert console.type("MULTI") == "OK\n"
    console.type("INCR c:tx")
    assert console.type("DISCARD") == "OK\n"
    assert console.type("GET c:tx") == '"2"\n'

    # Hints from COMMAND DOCS as you type; Tab completes command names, Esc undoes it.
    expect(page.locator("#status")).to_have_text(f"Connected to {address} (RESP2).")
    page.fill("#input", "")
    page.type("#input", "set k ")
    expect(page.locator("#hint")).to_have_text(
        "value [NX|XX] [GET] [EX seconds|PX milliseconds|EXAT unix-time-seconds|"
        "PXAT unix-time-milliseconds|KEEPTTL]")
    page.type("#input", "v ex")
    expect(page.locator("#hint")).to_have_text(re.compile(r"^ \[NX\|XX\] \[GET\]"))
    page.fill("#input", "")
    page.type("#input", "pfm")
    page.keyboard.press("Tab")
    expect(page.locator("#input")).to_have_value("PFMERGE")
    expect(page.locator("#hint")).to_have_text(" destkey sourcekey [sourcekey ...]")
    page.keyboard.press("Tab")
    expect(page.locator("#input")).to_have_value("pfm")  # cycled back to what was typed
    page.keyboard.press("Tab")
    page.keyboard.press("Escape")
    expect(page.locator("#input")).to_have_value("pfm")
    page.fill("#input", "")
    page.type("#input", "config g")
    page.keyboard.press("Tab")
    expect(page.locator("#input")).to_have_value("CONFIG GET")
    page.fill("#input", "")

    # Long output scrolls, the prompt stays in view; slow commands show their time.
    assert console.type("LRANGE c:big 0 -1").startswith('  1) "1"\n  2) "2"\n')
    assert page.evaluate("() => { const s = document.getElementById('screen'); "
                         "return s.scrollHeight > s.clientHeight && "
                         "s.scrollTop + s.clientHeight >= s.scrollHeight - 1; }")
    assert re.fullmatch(r"\(nil\)\n\(0\.[67]\ds\)\n", console.type("BLPOP c:nothing 0.6"))

    # Ctrl-C drops the line being typed, as in a terminal.
    page.fill("#input", "GET half")
    page.keyboard.press("Control+c")
    expect(page.locator("#input")).to_have_value("")
    assert console.screen.endswith(f"{address}> GET half^C\n")

    # Ctrl-L and clear empty the screen.
    page.keyboard.press("Control+l")
    assert console.screen == ""
    console.type("PING")
    console.type("clear")
    assert console.screen == ""

    # The picture for the docs: replies of several kinds, and a hint being shown.
    for line in ['SET greeting "hello world"', "GET greeting", "HGETALL c:h",
                 "XRANGE c:x - +", 'ECHO "caf\\xc3\\xa9 \\x00\\n"', "help set"]:
        console.type(line)
    page.type("#input", "set k ")
    screenshot(page, "console.png")
    if os.environ.get("RG_UPDATE_DOCS_SCREENSHOT"):  # the docs picture changes on request only
        shutil.copyfile(ARTIFACTS / "console.png", DOCS_SCREENSHOT)
    page.fill("#input", "")

    # History with up/down, kept across a reload (the token stays for the tab).
    page.reload()
    console.wait_connected()
    page.focus("#input")
    page.type("#input", "draft")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#input")).to_have_value("help set")
    page.keyboard.press("ArrowUp")
    expect(page.locator("#input")).to_have_value('ECHO "caf\\xc3\\xa9 \\x00\\n"')
    page.keyboard.press("ArrowDown")
    page.keyboard.press("ArrowDown")
    expect(page.locator("#input")).to_have_value("draft")
    page.keyboard.press("Enter")
    assert "unknown command 'draft'" in console.last_reply()
    console.check_clean()


class StreamingCli:
    """The real redis-cli running a streaming command, its output read as it comes."""

    def __init__(self, port: int, *argv: str) -> None:
        self.process = subprocess.Popen(["redis-cli", "-p", str(port), "--no-raw", *argv],
                                        stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        self.output = b""

    def until(self, lines: int) -> str:
        """Its output once it has printed ``lines`` lines (or failed the test trying)."""
        assert self.process.stdout
        deadline = time.monotonic() + 10
        while self.output.count(b"\n") < lines:
            assert time.monotonic() < deadline, self.output
            ready, _, _ = select.select([self.process.stdout], [], [], 0.1)
            if ready:
                chunk = os.read(self.process.stdout.fileno(), 65536)
                assert chunk, f"redis-cli ended: {self.output!r}"
                self.output += chunk
        return self.output.decode()

    def close(self) -> None:
        self.process.kill()
        self.process.wait()
        if self.process.stdout:
            self.process.stdout.close()


def streamed(console: Console, lines: int) -> str:
    """What the running streaming command has printed, once it is ``lines`` lines."""
    expect(console.page.locator("#screen")).to_have_attribute("aria-busy", "true")
    deadline = time.monotonic() + 10
    while (text := console.last_reply()).count("\n") < lines:
        assert time.monotonic() < deadline, text
        console.page.wait_for_timeout(20)
    return text


@needs_browser
@needs_cli
def test_console_streams_as_redis_cli(context: BrowserContext, redis: RedisServer,
                                      gw: GatewayProcess) -> None:
    """SUBSCRIBE, PSUBSCRIBE, SSUBSCRIBE print the banner, the confirmations and each message
    byte for byte as redis-cli does on the same server; MONITOR its OK and lines; Ctrl-C
    stops the stream (the subscription leaves Redis) and the console is usable again."""
    page = context.new_page()
    console = Console(page).open(gw.url + "/console/")
    console.connect(None, gw.tokens["admin"])
    cases = [("SUBSCRIBE c:s1 c:s2", ["c:s1", "c:s2"], ["c:s1", "c:s2"]),
             ("PSUBSCRIBE c:p*", ["c:p*"], ["c:px"]),
             ("SSUBSCRIBE c:ss", ["c:ss"], [])]  # SPUBLISH below
    messages = ["hello, world", "two\nlines", "caf\u00e9"]
    for line, names, channels in cases:
        cli = StreamingCli(redis.port, *line.split())
        try:
            confirmations = 1 + 3 * len(names)  # the banner, then three lines each
            cli.until(confirmations)
            page.fill("#input", line)
            page.press("#input", "Enter")
            streamed(console, confirmations)
            for name in names:  # the gateway's subscriber connection has them too
                if not name.endswith("*") and line.startswith("SUBSCRIBE"):
                    assert numsub(redis, name) == 2
            sent = 0
            for channel in channels or names:
                for message in messages:
                    publish = "SPUBLISH" if line.startswith("SSUBSCRIBE") else "PUBLISH"
                    redis_command(redis.port, publish, channel, message)
                    sent += 1
            per = 4 if line.startswith("PSUBSCRIBE") else 3
            want = cli.until(confirmations + sent * per)  # a line break prints as "\n"
            got = streamed(console, want.count("\n"))
            assert got == want, f"{line}:\n  redis-cli {want!r}\n  console   {got!r}"
            page.press("#input", "Control+c")
            expect(page.locator("#screen")).not_to_have_attribute("aria-busy", "true")
            assert console.type("PING") == "PONG\n"
        finally:
            cli.close()
    deadline = time.monotonic() + 5  # Ctrl-C closed the stream: the gateway unsubscribed
    while numsub(redis, "c:s1"):
        assert time.monotonic() < deadline
        time.sleep(0.02)

    # MONITOR: OK, then each command Redis runs, in redis-cli's format.
    page.fill("#input", "MONITOR")
    page.press("#input", "Enter")
    assert streamed(console, 1) == "OK\n"
    redis_command(redis.port, "SET", "c:mon", 'v "q"')
    text = streamed(console, 2)
    assert re.fullmatch(r'OK\n\d+\.\d+ \[0 [^\]]+\] "SET" "c:mon" "v \\"q\\""\n', text), text
    page.press("#input", "Control+c")
    expect(page.locator("#screen")).not_to_have_attribute("aria-busy", "true")
    # A token whose channel rules refuse it: the banner, then NOPERM, and the stream is over
    # (redis-cli stops at an error reply too).
    console.connect(None, gw.tokens["nochannels"])
    refused = console.type("SUBSCRIBE c:s1")
    assert refused.startswith("Reading messages... (press Ctrl-C to quit)\n(error) NOPERM ")
    assert "'c:s1' channel" in refused
    assert console.type("PING") == "PONG\n"
    console.check_clean()


@needs_browser
def test_bad_token_and_where_the_token_is_kept(context: BrowserContext,
                                               gw: GatewayProcess) -> None:
    page = context.new_page()
    console = Console(page).open(gw.url + "/console/")
    page.get_by_label("Token", exact=True).fill("rgw_not_a_token")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#status")).to_have_text(
        "The token was refused (401): invalid token: it is unknown or has been revoked")
    assert console.type("PING") == "(error) invalid token: it is unknown or has been revoked\n"

    # A good token: kept for this tab only, never in the URL or the page's text.
    token = gw.tokens["admin"]
    console.connect(None, token)
    assert console.type("PING") == "PONG\n"
    storage = page.evaluate("() => [sessionStorage.getItem('redis-console.token'), "
                            "localStorage.getItem('redis-console.token'), "
                            "JSON.stringify(Object.assign({}, localStorage))]")
    assert storage[0] == token and storage[1] is None and token not in storage[2]
    assert token not in page.url
    assert token not in page.evaluate("() => document.body.innerText")
    assert token not in page.content().replace(f'value="{token}"', "")  # only in the field
    other_tab = context.new_page()
    Console(other_tab).open(gw.url + "/console/")
    assert other_tab.get_by_label("Token", exact=True).input_value() == ""  # not in a new tab

    # "Remember" moves it to local storage, where a new tab finds it and connects.
    console.connect(None, token, remember=True)
    assert page.evaluate("() => sessionStorage.getItem('redis-console.token')") is None
    fresh = Console(context.new_page()).open(gw.url + "/console/")
    fresh.wait_connected()
    assert fresh.type("PING") == "PONG\n"
    page.bring_to_front()
    page.click("#connection summary")  # the settings fold away once connected
    page.get_by_role("button", name="Forget the token").click()
    assert page.evaluate("() => localStorage.getItem('redis-console.token')") is None
    console.check_clean()


@needs_browser
def test_keyboard_only_and_accessible(context: BrowserContext, gw: GatewayProcess) -> None:
    page = context.new_page()
    console = Console(page).open(gw.url + "/console/")
    # Focus starts in the token field (the URL is known); Enter connects.
    expect(page.get_by_label("Token", exact=True)).to_be_focused()
    page.keyboard.type(gw.tokens["admin"])
    page.keyboard.press("Enter")
    console.wait_connected()
    expect(page.locator("#input")).to_be_focused()
    page.keyboard.type("ECHO 'typed only'")
    page.keyboard.press("Enter")
    expect(page.locator("#output")).to_contain_text('"typed only"')
    # Tab with nothing to complete moves on (no keyboard trap); Shift+Tab comes back.
    page.keyboard.press("Tab")
    expect(page.locator("#input")).not_to_be_focused()
    page.keyboard.press("Shift+Tab")
    expect(page.locator("#input")).to_be_focused()

    # Every control has a name; the output is a log, the status a live status.
    assert page.get_by_role("textbox", name=f"127.0.0.1:{gw.port}>").count() == 1
    assert page.get_by_role("log", name="Console output").count() == 1
    assert page.get_by_role("status").count() == 1
    for label in ("Gateway URL", "Token", "Protocol", "Remember the token in this browser"):
        assert page.get_by_label(label, exact=True).count() == 1, label
    assert page.locator("#input").get_attribute("aria-describedby") == "hint-text keys"
    page.type("#input", "get ")
    expect(page.locator("#hint-text")).to_have_text("Arguments: key")

    # Themes: the system's by default, then dark and light from the button.
    def background() -> str:
        return str(page.evaluate("() => getComputedStyle(document.body).backgroundColor"))

    dark = background()
    page.emulate_media(color_scheme="light")
    light = background()
    assert dark != light
    theme = page.get_by_role("button", name=re.compile("^Theme"))
    theme.click()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "dark"
    assert background() == dark
    theme.click()
    assert background() == light
    screenshot(page, "console-light.png")
    page.reload()
    assert page.evaluate("() => document.documentElement.dataset.theme") == "light"
    console.check_clean()


@needs_browser
def test_as_a_local_file(context: BrowserContext, gw: GatewayProcess) -> None:
    """Opened from disk (no gateway serving it), pointed at a gateway URL: CORS does the rest."""
    page = context.new_page()
    console = Console(page).open(CONSOLE_FILE.as_uri())
    assert page.locator("#url").input_value() == ""  # nothing to default to
    expect(page.locator("#url")).to_be_focused()
    console.connect(gw.url, gw.tokens["admin"], protocol=3)
    assert console.prompt == f"127.0.0.1:{gw.port}> "
    console.type("HSET c:file a 1")
    assert console.type("HGETALL c:file") == '1# "a" => "1"\n'
    assert console.type('ECHO "\\xff"') == '"\\xff"\n'  # binary, in the path style
    expect(page.locator("#status")).to_have_text(f"Connected to 127.0.0.1:{gw.port} (RESP3).")
    assert console.type("help get").startswith("\n  GET key\n")
    # connect host port: the same settings at another address.
    assert console.type(f"connect localhost {gw.port}") == ""
    console.wait_connected()
    assert console.prompt == f"localhost:{gw.port}> "
    assert page.locator("#url").input_value() == f"http://localhost:{gw.port}"
    screenshot(page, "console-file.png")
    console.check_clean()


@needs_browser
def test_gateway_down_and_token_without_command_docs(context: BrowserContext,
                                                     gw: GatewayProcess) -> None:
    page = context.new_page()
    console = Console(page).open(gw.url + "/console/")
    console.connect(None, gw.tokens["nodocs"])
    expect(page.locator("#status")).to_have_text(re.compile(
        r"No hints or help: NOPERM this token has no permissions to run the 'command\|docs'"))
    assert console.type("PING") == "PONG\n"
    assert console.type("help get").startswith("No help available: COMMAND DOCS did not answer")
    page.type("#input", "get ")
    expect(page.locator("#hint")).to_have_text("")

    # Nothing listens at this address: the message, and "not connected> " meanwhile.
    page.click("#connection summary")
    page.fill("#url", f"http://127.0.0.1:{free_port()}")
    page.get_by_role("button", name="Connect").click()
    expect(page.locator("#status")).to_have_text(re.compile(
        r"^Could not connect to redis-gateway at 127\.0\.0\.1:\d+: Failed to fetch$"))
    assert console.prompt == "not connected> "
    assert console.type("PING").startswith("Could not connect to redis-gateway at")
    console.problems.clear()  # the browser logs the refused connections


@needs_browser
def test_appsync_mode(context: BrowserContext, gw: GatewayProcess) -> None:
    """The seed's schema (getRedis / putRedis) on the gateway's own /graphql."""
    answer = httpx.post(gw.url + "/graphql", headers={"x-api-key": gw.tokens["admin"]},
                        json={"query": 'query { getRedis(Command: ["PING"]) }'})
    if answer.status_code == 404:
        pytest.skip("this gateway has no /graphql yet")
    page = context.new_page()
    console = Console(page).open(gw.url + "/console/")
    page.get_by_label("AppSync (GraphQL: getRedis / putRedis)").check()
    assert page.locator("#url").input_value() == gw.url + "/graphql"
    assert page.get_by_label("Protocol").is_hidden()
    console.connect(None, gw.tokens["admin"], appsync=True)
    expect(page.locator("#status")).to_have_text(f"Connected to 127.0.0.1:{gw.port} (AppSync).")
    assert console.type('SET c:as "hello world"') == '"OK"\n'  # a write: sent as putRedis
    assert console.type("GET c:as") == '"hello world"\n'
    console.type("DEL c:al")
    console.type('RPUSH c:al "a b" c')
    assert console.type("LRANGE c:al 0 -1") == '1) "a b"\n2) "c"\n'
    assert console.type("GET c:none") == "(nil)\n"
    assert console.type("MULTI") == "OK\n"
    console.type("INCR c:ai")
    console.type("LRANGE c:al 0 -1")
    assert console.type("EXEC") == '1) (integer) 1\n2) 1) "a b"\n   2) "c"\n'
    assert console.type("NOSUCH x").startswith("(error) ERR unknown command 'NOSUCH'")
    assert console.type("help get").startswith("\n  GET key\n")  # COMMAND DOCS via putRedis
    console.type("DEL c:ai")
    console.check_clean()
