"""Documents checked once: size, parse, cost, validation; the outcome cached.

The checks run cheapest first, and each bounds the next: the size in bytes bounds
parsing; the token limit bounds the tree, and so the cost pass and validation
(graphql-core's OverlappingFieldsCanBeMergedRule compares same-named fields pairwise,
quadratic in the fields of a selection set: a limit on the tree is what bounds it).

Even bounded, a new document costs 25-200 µs a token to parse and validate (measured:
up to ~400 ms for 2,000 tokens of one repeated field), so that work runs on one worker
thread, and the event loop waits for the GIL at most a switch interval at a time instead
of for the whole check. It waits that long at every wake-up, so the interval is lowered
from Python's 5 ms: under a flood of such documents, a REST GET's median went from
10.6 ms to 1.8 ms (1.1 ms without the flood), and the flood itself slowed by none.
"""

from __future__ import annotations

import asyncio
import sys
from collections import OrderedDict
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from graphql import ASTValidationRule, GraphQLError, GraphQLSchema, parse, validate
from graphql.error import GraphQLSyntaxError
from graphql.language import DocumentNode

from ..settings import GraphQLSettings
from .limits import cost_errors, document_size, limit_error

Outcome = tuple[DocumentNode | None, list[GraphQLError]]

# Seconds a thread holds the GIL while another waits for it (Python's default: 0.005).
_SWITCH_INTERVAL = 0.0005


class DocumentCache:
    """Least recently used outcomes, bounded by count and by total document bytes.

    Clients send the same few documents again and again (with new variables), and
    parsing plus validating costs more than executing. A parsed tree takes up to ~100
    times its text, so the byte budget is what bounds memory; one document may take at
    most 1/16 of it, so a few large documents cannot push out all the small ones.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self._entries: OrderedDict[str, tuple[int, Outcome]] = OrderedDict()
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, query: str) -> Outcome | None:
        entry = self._entries.get(query)
        if entry is None:
            return None
        self._entries.move_to_end(query)
        return entry[1]

    def put(self, query: str, size: int, outcome: Outcome) -> None:
        if size > self._max_bytes // 16 or query in self._entries:
            return
        while self._entries and (len(self._entries) >= self._max_entries
                                 or self.bytes + size > self._max_bytes):
            _, (evicted, _) = self._entries.popitem(last=False)
            self.bytes -= evicted
        self._entries[query] = (size, outcome)
        self.bytes += size


class DocumentChecker:
    def __init__(self, schema: GraphQLSchema, rules: Sequence[type[ASTValidationRule]],
                 settings: GraphQLSettings) -> None:
        self._schema = schema
        self._rules = rules
        self._settings = settings
        self._cache = DocumentCache(settings.document_cache_entries,
                                    settings.document_cache_bytes)
        # One thread: checks queue behind each other rather than share the GIL n ways.
        self._worker = ThreadPoolExecutor(1, thread_name_prefix="graphql-check")
        sys.setswitchinterval(min(sys.getswitchinterval(), _SWITCH_INTERVAL))

    async def check(self, query: str) -> Outcome:
        """The parsed document and its errors; no document if it was refused unparsed."""
        size, too_big = document_size(query, self._settings.max_document_bytes)
        if too_big is not None:
            return None, [too_big]
        outcome = self._cache.get(query)
        if outcome is None:
            loop = asyncio.get_running_loop()
            outcome = await loop.run_in_executor(self._worker, self._checked, query)
            self._cache.put(query, size, outcome)
        return outcome

    def _checked(self, query: str) -> Outcome:
        limit = self._settings.max_tokens
        try:
            document = parse(query, max_lexical_tokens=limit, max_comments=limit)
        except GraphQLSyntaxError as exc:
            return None, [_token_limit(exc, limit) or exc]
        errors = cost_errors(document, self._settings) or validate(
            self._schema, document, self._rules)
        return document, list(errors)


def _token_limit(error: GraphQLSyntaxError, limit: int) -> GraphQLError | None:
    """graphql-core's own token and comment limits, as our limit error naming the setting."""
    if not error.message.endswith(("tokens. Parsing aborted.", "comments. Parsing aborted.")):
        return None
    return limit_error(f"the document has more than {limit} tokens or comments "
                       "(graphql.max_tokens)")
