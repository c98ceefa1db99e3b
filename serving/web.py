"""The web chat's files (`serving/web/`): the page at `/`, its scripts and styles under `/static/`.

Plain ES modules, no build step and nothing from a CDN (clusters may be offline). Every response carries a strict
Content-Security-Policy: scripts and styles from this origin only, no inline code, requests to this origin only,
so text a model or a document injects cannot run even if it reached the DOM as markup.
"""

from __future__ import annotations

import mimetypes
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

__all__ = ["SECURITY_HEADERS", "WEB_DIR", "mount_web"]

WEB_DIR = Path(__file__).with_name("web")

# Module scripts load only with a JavaScript MIME type (nosniff); some hosts' mime tables (Windows registry, old
# /etc/mime.types) say otherwise.
mimetypes.add_type("text/javascript", ".js")
mimetypes.add_type("text/css", ".css")

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",  # revalidate (ETag): a new release of the page is seen at once
}


class _WebFiles(StaticFiles):
    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(SECURITY_HEADERS)
        return response


def mount_web(app: FastAPI) -> None:
    """`GET /` -> the chat page; `/static/*` -> its assets. Open without an API key: the page asks for one."""

    @app.api_route("/", methods=["GET", "HEAD"], include_in_schema=False)
    async def chat_page() -> FileResponse:
        return FileResponse(WEB_DIR / "index.html", media_type="text/html; charset=utf-8", headers=SECURITY_HEADERS)

    app.mount("/static", _WebFiles(directory=WEB_DIR), name="web")
