"""Serves the web console's files, shipped inside the package (no CDN, no network)."""

from __future__ import annotations

import mimetypes
from importlib import resources
from importlib.abc import Traversable

from .errors import NotFound
from .http import Response

_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8",
          ".html": "text/html; charset=utf-8", ".svg": "image/svg+xml",
          ".png": "image/png", ".json": "application/json"}
# The page may only load its own files and talk to the gateway it was opened from,
# or to the endpoint the user types in (connect-src *), never run inline code.
_SECURITY = [
    (b"content-security-policy", b"default-src 'self'; connect-src *; img-src 'self' data:; "
                                 b"style-src 'self'; script-src 'self'; frame-ancestors 'none'"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]


class StaticFiles:
    def __init__(self, package: str, folder: str) -> None:
        self._root: Traversable = resources.files(package) / folder

    def get(self, relative: str) -> Response:
        parts = [p for p in relative.split("/") if p]
        if any(p in ("..", ".") or p.startswith(".") for p in parts):
            raise NotFound("no such console file")
        node = self._root
        for part in parts or ["index.html"]:
            node = node / part
        if node.is_dir():
            node = node / "index.html"
        if not node.is_file():
            raise NotFound("no such console file" if self._root.is_dir()
                           else "the console's files are not installed in this package")
        suffix = "." + node.name.rsplit(".", 1)[-1]
        kind = _TYPES.get(suffix) or mimetypes.guess_type(node.name)[0] or \
            "application/octet-stream"
        return Response(200, node.read_bytes(), [(b"content-type", kind.encode()), *_SECURITY])
