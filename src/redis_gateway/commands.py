"""What the connected server says about its commands: flags, ACL categories, keys.

The table is read from the live server (``COMMAND INFO``) rather than written down
here, so a newer Redis, Valkey or a module's commands are classified correctly
without a release of the gateway. Key positions come from the server's key specs
(Redis 7+) or its legacy first/last/step triple (Redis 6), and where neither can
name the keys (``SORT ... STORE``, a script's keys) the server is asked per call.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from .redis_args import keyword, parse_long_long
from .redis_types import pairs, text

# Key-spec flags that mean the command reads, or writes, the key's value.
READ_FLAGS = frozenset({"access"})
WRITE_FLAGS = frozenset({"insert", "delete", "update"})


@dataclass(frozen=True)
class KeySpec:
    flags: frozenset[str]
    begin: tuple[Any, ...]  # ("index", pos) | ("keyword", word, startfrom) | ("unknown",)
    find: tuple[Any, ...]  # ("range", lastkey, step, limit) | ("keynum", idx, first, step)

    @property
    def known(self) -> bool:
        return self.begin[0] != "unknown" and self.find[0] != "unknown" and (
            "incomplete" not in self.flags
        )


@dataclass(frozen=True)
class CommandInfo:
    name: str  # lower case; "config|get" for a subcommand
    arity: int
    flags: frozenset[str]
    categories: frozenset[str]  # without the '@'
    first: int
    last: int
    step: int
    key_specs: tuple[KeySpec, ...] = ()
    subcommands: dict[str, CommandInfo] = field(default_factory=dict)
    # Derived from categories once, read on every command.
    blocking: bool = field(init=False)
    pubsub: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "blocking", "blocking" in self.categories)
        object.__setattr__(self, "pubsub", "pubsub" in self.categories)

    @property
    def keys_need_server(self) -> bool:
        """True when only the server can say which arguments are keys."""
        if self.key_specs:
            return not all(spec.known for spec in self.key_specs)
        return "movablekeys" in self.flags

    def arity_ok(self, argc: int) -> bool:
        return argc == self.arity if self.arity >= 0 else argc >= -self.arity

    def keys(self, argv: Sequence[bytes], *, shard_channels: bool = False
             ) -> list[tuple[bytes, frozenset[str]]]:
        """The keys in ``argv`` with the flags that say how each is used.

        Only valid when ``keys_need_server`` is false and the arity was checked.
        Without key specs (Redis 6) a key is reported as both read and written.
        ``shard_channels``: also the arguments a ``not_key`` spec names (SPUBLISH's
        channel), which are no keys but decide the slot, as Redis Cluster routes them.
        """
        if self.key_specs:
            found: list[tuple[bytes, frozenset[str]]] = []
            for spec in self.key_specs:
                if "not_key" in spec.flags and not shard_channels:
                    continue
                found += [(argv[i], spec.flags) for i in _spec_positions(spec, argv)]
            return found
        if self.first <= 0:
            return []
        last = self.last if self.last >= 0 else len(argv) + self.last
        both = READ_FLAGS | WRITE_FLAGS
        return [(argv[i], both) for i in range(self.first, min(last, len(argv) - 1) + 1,
                                                 self.step or 1)]


def _spec_positions(spec: KeySpec, argv: Sequence[bytes]) -> list[int]:
    """Where the spec finds keys, read as Redis reads key specs, and then some.

    A keyword is compared as ``strcasecmp`` does (``"STREAMS\\0"`` is STREAMS). Redis's key
    specs stop at the keyword's first occurrence, but some commands' own parsers take the
    last (GEORADIUS ... STORE a STORE b writes b, while Redis 7.0's ACL checks only a), so
    the keys after every occurrence are returned: a check over all of them is never less
    strict than Redis's, whichever occurrence the command uses.
    """
    argc = len(argv)
    if spec.begin[0] == "index":
        starts = [spec.begin[1]]
    else:
        word = spec.begin[1].lower()
        startfrom = spec.begin[2]
        # The range Redis searches: forwards to the last but one argument, or backwards
        # from the end down to the second.
        indexes = range(startfrom, argc - 1) if startfrom > 0 else \
            range(argc + startfrom, 1, -1)
        starts = [i + 1 for i in indexes if 0 < i < argc and keyword(argv[i]) == word]
    found: list[int] = []
    for start in starts:
        if start < argc:
            found += _find_keys(spec, argv, start)
    return found


def _find_keys(spec: KeySpec, argv: Sequence[bytes], start: int) -> range:
    argc = len(argv)
    if spec.find[0] == "range":
        lastkey, step, limit = spec.find[1:]
        if lastkey >= 0:
            last = start + lastkey
        elif limit:
            last = start + (argc - start) // limit + lastkey
        else:
            last = argc + lastkey
        return range(start, min(last, argc - 1) + 1, step or 1)
    keynumidx, firstkey, step = spec.find[1:]
    count = parse_long_long(argv[start + keynumidx]) if start + keynumidx < argc else None
    if count is None or count < 0:
        raise ValueError("numkeys is not an integer or out of range")
    first = start + firstkey
    if count and first + (count - 1) * step >= argc:
        raise ValueError("numkeys is out of range")
    return range(first, first + count * step, step)


class CommandTable:
    """The server's commands by lower-case name."""

    def __init__(self, commands: dict[str, CommandInfo]) -> None:
        self.commands = commands
        # Names exactly as clients send them ("GET", "get"), to skip decoding and
        # lower-casing on every command. Only known names are kept, so it stays small.
        self._as_sent: dict[bytes, CommandInfo] = {}

    @classmethod
    def from_command_info(cls, reply: list[Any]) -> CommandTable:
        table: dict[str, CommandInfo] = {}
        for entry in reply:
            if entry:  # COMMAND INFO answers nil for a name it does not know
                info = _parse_entry(entry)
                table[info.name] = info
        return cls(table)

    def lookup(self, argv: Sequence[bytes]) -> CommandInfo | None:
        """The command, or its subcommand, as Redis finds them; None where Redis would not.

        Redis looks a name up by a hash of every byte but compares with ``strcasecmp``,
        which stops at a NUL: ``"GET\\0x"`` may or may not reach GET, depending on the
        hash table's layout. A name with a NUL is therefore never resolved here. Case is
        folded for ASCII letters only, as in the C locale. A container command (CONFIG,
        CLIENT, ...) with an unknown subcommand is None: Redis refuses it too.
        """
        info = self._as_sent.get(argv[0])
        if info is None:
            name = argv[0]
            if b"\0" in name:
                return None
            info = self.commands.get(name.lower().decode("latin-1"))
            if info is None:
                return None
            if len(self._as_sent) < 4096:
                self._as_sent[bytes(name)] = info
        if not info.subcommands or len(argv) < 2:
            return info
        sub = argv[1]
        if b"\0" in sub:
            return None
        return info.subcommands.get(info.name + "|" + sub.lower().decode("latin-1"))


def _parse_spec(flat: list[Any]) -> KeySpec:
    spec = pairs(flat)
    begin = pairs(spec.get("begin_search", []))
    find = pairs(spec.get("find_keys", []))
    begin_args = pairs(begin.get("spec", []) or [])
    find_args = pairs(find.get("spec", []) or [])
    begin_type = text(begin.get("type", b"unknown"))
    find_type = text(find.get("type", b"unknown"))
    if begin_type == "index":
        begin_t: tuple[Any, ...] = ("index", int(begin_args["index"]))
    elif begin_type == "keyword":
        begin_t = ("keyword", begin_args["keyword"], int(begin_args["startfrom"]))
    else:
        begin_t = ("unknown",)
    if find_type == "range":
        find_t: tuple[Any, ...] = (
            "range", int(find_args["lastkey"]), int(find_args["keystep"]),
            int(find_args["limit"]),
        )
    elif find_type == "keynum":
        find_t = (
            "keynum", int(find_args["keynumidx"]), int(find_args["firstkey"]),
            int(find_args["keystep"]),
        )
    else:
        find_t = ("unknown",)
    flags = frozenset(text(f).lower() for f in spec.get("flags", []))
    return KeySpec(flags, begin_t, find_t)


def _parse_entry(entry: list[Any]) -> CommandInfo:
    name = text(entry[0]).lower()
    categories = frozenset(text(c).lstrip("@").lower() for c in entry[6]) if len(entry) > 6 \
        else frozenset()
    specs = tuple(_parse_spec(s) for s in entry[8]) if len(entry) > 8 else ()
    subs = {}
    if len(entry) > 9:
        for sub in entry[9]:
            info = _parse_entry(sub)
            subs[info.name] = info
    return CommandInfo(
        name=name,
        arity=int(entry[1]),
        flags=frozenset(text(f).lower() for f in entry[2]),
        categories=categories,
        first=int(entry[3]),
        last=int(entry[4]),
        step=int(entry[5]),
        key_specs=specs,
        subcommands=subs,
    )
