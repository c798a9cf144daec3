"""Hash slots: which of the 16384 slots a key, and a command, lives in.

Redis Cluster routes by them; the replicas topology picks a command's replica by them.

Keys are found from the live server's command table (``commands.py``), like the
policy check does, so a newer Redis's or a module's commands route correctly. The
common case, one key at a fixed position (GET, SET, HSET, ...), is looked up once
per command name and then costs a dictionary lookup and a C CRC per call: routing
sits on the hot path of every request a cluster backend serves.
"""

from __future__ import annotations

from binascii import crc_hqx
from collections.abc import Awaitable, Callable, Sequence

from ..commands import CommandInfo, CommandTable
from ..redis_types import Argv

SLOTS = 16384
KEYLESS = -1  # the slot of a command without keys: any node can run it
# Asks a server for a command's keys (COMMAND GETKEYS), for the commands whose keys
# only the server can find (SORT ... STORE, a module's commands).
AskKeys = Callable[[Argv], Awaitable[list[bytes]]]


def key_slot(key: bytes) -> int:
    """The slot of ``key``: CRC16 of its hash tag (the first non-empty ``{...}``) or all of it."""
    start = key.find(b"{")
    if start >= 0:
        end = key.find(b"}", start + 1)
        if end > start + 1:
            key = key[start + 1 : end]
    # CRC-CCITT with a zero start value is the XMODEM CRC16 of the cluster specification.
    return crc_hqx(key, 0) & (SLOTS - 1)


class SlotFinder:
    """Finds the slot of commands by their keys, using one server's command table."""

    def __init__(self, table: CommandTable, ask_keys: AskKeys) -> None:
        self._table = table
        self._ask_keys = ask_keys
        # argv[0] exactly as sent -> (entry, position of its only key or 0 for "look closer").
        self._simple: dict[bytes, tuple[CommandInfo, int]] = {}

    def lookup(self, argv: Argv) -> CommandInfo | None:
        return self._table.lookup(argv) if argv else None

    def is_read(self, argv: Argv) -> bool:
        info = self.lookup(argv)
        return info is not None and "readonly" in info.flags

    def reads_only(self, commands: Sequence[Argv]) -> bool:
        """Whether every command has the server's ``readonly`` flag: a batch a replica may
        run (a batch that writes, then reads, must see its own write)."""
        return all(self.is_read(argv) for argv in commands)

    def slot_now(self, argv: Argv) -> int | None:
        """The slot of a command with one key at a fixed place, known without awaiting
        anything (most commands, once seen); None for the others: ask ``slot``."""
        simple = self._simple.get(argv[0]) if argv else None
        if simple is not None and simple[1] and len(argv) > simple[1]:
            return key_slot(argv[simple[1]])
        return None

    async def slots(self, commands: Sequence[Argv]) -> list[int]:
        """``slot`` of each command, awaiting only for those ``slot_now`` cannot tell."""
        return [known if (known := self.slot_now(argv)) is not None else await self.slot(argv)
                for argv in commands]

    async def slot(self, argv: Argv) -> int:
        """The slot of the command's first key, KEYLESS if it has none. Keys in other
        slots are the server's to refuse (CROSSSLOT), as they would be without us."""
        known = self.slot_now(argv)
        if known is not None:
            return known
        keys = await self.keys(argv)
        return key_slot(keys[0]) if keys else KEYLESS

    async def keys(self, argv: Argv) -> list[bytes]:
        """The command's keys; none for an unknown command or malformed arguments
        (any node can then answer with Redis's own error)."""
        info = self.lookup(argv)
        if info is None:
            return []
        if info.keys_need_server:
            return await self._ask_keys(argv)
        # Bounded: the name is cached as the client spelled it, and "GeT", "gEt", ...
        # are all valid spellings.
        if argv[0] not in self._simple and not info.subcommands and len(self._simple) < 4096:
            self._simple[argv[0]] = (info, _single_key_position(info))
        if not info.arity_ok(len(argv)):
            return []
        try:
            return [key for key, _ in info.keys(argv, shard_channels=info.pubsub)]
        except ValueError:  # numkeys out of range: Redis says so
            return []


def _single_key_position(info: CommandInfo) -> int:
    """The index of the command's only key when it is always there, else 0."""
    if info.key_specs:
        specs = [s for s in info.key_specs if "not_key" not in s.flags]
        if len(specs) == 1 and specs[0].begin[0] == "index" and specs[0].find[:2] == ("range", 0):
            return int(specs[0].begin[1])
        return 0
    # Redis 6 has no key specs: its first/last/step triple.
    return info.first if info.first > 0 and info.first == info.last else 0
