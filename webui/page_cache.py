"""A cache in front of gradio for the two answers every page load asks for and that do not change between loads:
GET / (the page, ~1.3 MB: gradio embeds the whole config and its API description) and GET /config.

Gradio rebuilds both on every request (deep copies of the config and of the API description, the "use via API"
snippets of every endpoint, the template): ~80 ms of CPU each on this machine, under the GIL, so 200 concurrent
page loads queue behind each other. Both are a function of the app's config (fixed once the board is built:
language, model list and the rest are set per page by the on-load event), of the login, and of the request
parts gradio reads to write the page's root URL. `PageCache` keys on exactly those and answers repeats from
memory; a client that accepts gzip gets the answer compressed once (gradio sends both uncompressed).

Logins stay gradio's: with a login set, a request whose cookie names no logged-in user is passed to gradio
untouched (the login page, or 401 for /config) and never served from or stored in the cache; each logged-in user
has their own entries (the config carries the user name), looked up in gradio's own token table on each request,
so a logout takes effect at once. An app with a custom auth dependency is never cached. A new config object (gradio
rebuilds it, e.g. on reload) empties the cache; only 200 answers without a cookie being set are stored, and at most
`MAX_ENTRIES` of them (the Host header is the client's to choose).
"""

from __future__ import annotations

import asyncio
import gzip
from collections import OrderedDict
from typing import Any

CACHED_PATHS = frozenset({"/", "/config", "/config/"})
ROOT_HEADERS = (b"host", b"x-forwarded-host", b"x-gradio-server", b"x-forwarded-proto")
"""Request headers gradio reads to write the root URL into the page (route_utils.get_request_origin)."""
MAX_ENTRIES = 32
MAX_BODY = 16 * 1024 * 1024


class PageCache:
    """ASGI middleware (innermost of gradio's app, installed through `app_kwargs["middleware"]`, see
    `middleware()`)."""

    def __init__(self, app: Any, owner: Any = None) -> None:
        self.app = app
        if owner is not None:
            owner.page_cache = self  # the board's Blocks: tests and benchmarks read hits / misses there
        self.entries: OrderedDict[tuple, dict[str, Any]] = OrderedDict()
        self.pending: dict[tuple, asyncio.Event] = {}
        self.config: Any = None  # the config object the entries were made from
        self.hits = 0
        self.misses = 0

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        key = self._key(scope) if scope.get("type") == "http" and scope.get("method") == "GET" else None
        if key is None:
            await self.app(scope, receive, send)
            return
        entry = self.entries.get(key)
        if entry is None and key in self.pending:  # the same answer is being made: wait for it, once
            await self.pending[key].wait()
            entry = self.entries.get(key)
        if entry is not None:
            self.hits += 1
            await _send(entry, _accepts_gzip(scope), send)
            return
        self.misses += 1
        done = self.pending.setdefault(key, asyncio.Event())
        try:
            await self._fill(key, scope, receive, send)
        finally:
            if self.pending.get(key) is done:
                del self.pending[key]
            done.set()

    async def _fill(self, key: tuple, scope: dict, receive: Any, send: Any) -> None:
        captured: dict[str, Any] = {"body": []}

        async def capture(message: dict) -> None:
            if message["type"] == "http.response.start":
                captured["status"] = message["status"]
                captured["headers"] = list(message.get("headers", []))
            elif message["type"] == "http.response.body":
                captured["body"].append(message.get("body", b""))
                if not message.get("more_body", False):
                    # Stored before the last chunk goes out: a client that has the answer finds it cached.
                    self._store(key, captured)
            await send(message)

        await self.app(scope, receive, capture)

    def clear(self) -> None:
        self.entries.clear()

    def _key(self, scope: dict) -> tuple | None:
        """What the answer depends on, or None when this request must go to gradio uncached."""
        if scope.get("path") not in CACHED_PATHS:
            return None
        app = scope.get("app")
        blocks = app.get_blocks() if app is not None and hasattr(app, "get_blocks") else None
        config = getattr(blocks, "config", None)
        if not config or getattr(app, "auth_dependency", None) is not None:
            return None
        user = None
        if getattr(app, "auth", None):
            user = _logged_in_user(app, scope)
            if user is None:
                return None  # gradio answers with its login page (or 401): never from or into the cache
        if config is not self.config:
            self.entries.clear()
            self.config = config
        headers = tuple(sorted((k.lower(), v) for k, v in scope.get("headers", []) if k.lower() in ROOT_HEADERS))
        return (
            scope["path"],
            scope.get("query_string", b""),
            scope.get("scheme"),
            scope.get("server"),
            scope.get("root_path", ""),
            headers,
            user,
        )

    def _store(self, key: tuple, captured: dict[str, Any]) -> None:
        body = b"".join(captured["body"])
        headers = captured.get("headers") or []
        if captured.get("status") != 200 or len(body) > MAX_BODY:
            return
        if any(name.lower() in (b"set-cookie", b"content-encoding") for name, _ in headers):
            return
        self.entries[key] = {"headers": headers, "body": body, "gzip": None}
        while len(self.entries) > MAX_ENTRIES:
            self.entries.popitem(last=False)


def middleware(owner: Any) -> Any:
    """The entry for gradio's `launch(app_kwargs={"middleware": [...]})`; the cache is set as `owner.page_cache`."""
    from starlette.middleware import Middleware

    return Middleware(PageCache, owner=owner)


def _logged_in_user(app: Any, scope: dict) -> str | None:
    """The user gradio's own `get_current_user` would find for this request (its cookie, its token table)."""
    from starlette.datastructures import Headers
    from starlette.requests import cookie_parser

    cookies = cookie_parser(Headers(scope=scope).get("cookie", ""))
    token = cookies.get(f"access-token-{app.cookie_id}") or cookies.get(f"access-token-unsecure-{app.cookie_id}")
    return getattr(app, "tokens", {}).get(token)


def _accepts_gzip(scope: dict) -> bool:
    for name, value in scope.get("headers", []):
        if name.lower() == b"accept-encoding":
            return any(part.split(b";")[0].strip() == b"gzip" for part in value.lower().split(b","))
    return False


async def _send(entry: dict[str, Any], use_gzip: bool, send: Any) -> None:
    body = entry["body"]
    headers = [(k, v) for k, v in entry["headers"] if k.lower() not in (b"content-length", b"vary")]
    if use_gzip:
        if entry["gzip"] is None:
            entry["gzip"] = gzip.compress(body, compresslevel=6, mtime=0)
        body = entry["gzip"]
        headers.append((b"content-encoding", b"gzip"))
    headers += [(b"content-length", str(len(body)).encode()), (b"vary", b"Accept-Encoding")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": body})
