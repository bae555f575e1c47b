"""The status page at /ui: static files only; the page itself calls the admin API with the user's key."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from ..errors import NotFound
from .asgi import send_response
from .context import Request, Services

STATIC = Path(__file__).parent / "static"

_CONTENT_TYPES = {
    ".html": b"text/html; charset=utf-8",
    ".js": b"text/javascript; charset=utf-8",
    ".css": b"text/css; charset=utf-8",
}

# The page works offline by design; the policy makes the browser enforce it (no CDN, no third-party calls).
_SECURITY = [
    (b"cache-control", b"no-cache"),
    (b"x-content-type-options", b"nosniff"),
    (b"content-security-policy",
     b"default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
     b"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"),
]


async def page(services: Services, req: Request) -> None:
    """Serve GET /ui (the page) and /ui/<file> (its assets)."""
    body, content_type = _load(req.params.get("file", "index.html"))
    await send_response(req.send, 200, body, content_type, _SECURITY + req.headers)


@lru_cache(maxsize=16)
def _load(name: str) -> tuple[bytes, bytes]:
    """One static file by bare name; anything else (subpaths, '..', unknown types) is a 404."""
    content_type = _CONTENT_TYPES.get(Path(name).suffix)
    # Only plain names of the files shipped in static/: no separators, so '..' or '/etc' cannot escape.
    if content_type is None or "/" in name or "\\" in name or name.startswith("."):
        raise NotFound(f"no UI file {name!r}")
    try:
        return (STATIC / name).read_bytes(), content_type
    except OSError:
        raise NotFound(f"no UI file {name!r}") from None
