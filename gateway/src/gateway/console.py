"""The web console (console/ in the repository, built to console/dist), served at `/`.

Hashed assets (/assets/*, named by their content) are cached for a year; every other file, and
index.html above all, is revalidated on each load so that a new build is seen at once. Client
routes (/playground, /usage, ...) answer index.html; the API's own paths never do, so an unknown
API path stays a JSON 404 and a wrong method stays a 405.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from starlette.datastructures import URLPath
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Match, NoMatchFound
from starlette.types import Receive, Scope, Send

log = logging.getLogger("gateway.console")

# Where `make console` builds it, from this file: gateway/src/gateway/console.py.
DEFAULT_CONSOLE_DIR = Path(__file__).resolve().parents[3] / "console" / "dist"

# Paths the console must never answer, whatever the method: the API and the operators' routes.
RESERVED_PREFIXES = ("/api", "/docs", "/redoc", "/openapi.json", "/healthz", "/readyz", "/metrics")

IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"
# Scripts and styles only from the console's own files: an injected inline <script> never runs.
# connect-src 'self': the console talks to this gateway only. img-src data: blob: for image
# previews the console makes itself.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; "
    "form-action 'self'; frame-ancestors 'none'"
)
_SECURITY_HEADERS = {
    "content-security-policy": CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    # The console's URLs may carry a sign-in fragment only briefly; nothing else leaves the page.
    "referrer-policy": "no-referrer",
}


def is_reserved(path: str) -> bool:
    return any(path == prefix or path.startswith(prefix + "/") for prefix in RESERVED_PREFIXES)


class ConsoleRoute(BaseRoute):
    """GET/HEAD of any path outside the reserved ones: a file of the build, else index.html for
    a client route. Added after every API router, so it only sees what they did not take."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory.resolve()
        self.index = self.directory / "index.html"

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if (
            scope["type"] == "http"
            and scope["method"] in ("GET", "HEAD")
            and not is_reserved(scope["path"])
        ):
            return Match.FULL, {}
        return Match.NONE, {}

    def url_path_for(self, name: str, /, **path_params: Any) -> URLPath:
        raise NoMatchFound(name, path_params)

    async def handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = self._response(Request(scope).url.path)
        await response(scope, receive, send)

    def _response(self, path: str) -> Response:
        relative = path.lstrip("/")
        file = self._file(relative) if relative else None
        if file is not None:
            cache = IMMUTABLE if relative.startswith("assets/") else REVALIDATE
            return FileResponse(file, headers={**_SECURITY_HEADERS, "cache-control": cache})
        last_segment = relative.rsplit("/", 1)[-1]
        if "." in last_segment or relative.startswith("assets/"):
            # A missing file (an old hashed asset, a typo): a 404, not the page in its place.
            raise HTTPException(404, f"no such file: /{relative[:200]}")
        return FileResponse(
            self.index,
            media_type="text/html",
            headers={**_SECURITY_HEADERS, "cache-control": REVALIDATE},
        )

    def _file(self, relative: str) -> Path | None:
        candidate = (self.directory / relative).resolve()
        # Nothing outside the build, whatever the path says (.., symlinks).
        if not candidate.is_relative_to(self.directory) or not candidate.is_file():
            return None
        return candidate


def install_console(app: FastAPI, directory: Path | None) -> None:
    """Serves the built console when its index.html exists; without a build, the API alone."""
    directory = directory or DEFAULT_CONSOLE_DIR
    if not (directory / "index.html").is_file():
        log.info("no console build in %s: `make console` builds it", directory)
        return
    app.router.routes.append(ConsoleRoute(directory))
