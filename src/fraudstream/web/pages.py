"""The analyst's page: plain HTML, CSS and ES modules served as they are (no build step).

``GET /`` is the single page (map, live feed, review queue, rules, profiles, metrics as tabs);
``/static/`` holds its modules and the vendored Leaflet (``scripts/vendor_leaflet.sh``).
The page reads everything through the same JSON API as any client. For changes it needs the
bearer token: it takes it once from the URL fragment (``/#token=...``, which browsers never
send to a server or put in a Referer) or from a paste box, and keeps it in the browser's
localStorage. The server never hands the token to a page: any site open in the same browser
could otherwise read it from a local endpoint (DNS rebinding), and every local process could.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["STATIC_DIR", "install_pages"]

STATIC_DIR = Path(__file__).parent / "static"

_SECURITY_HEADERS = {
    # Only our own scripts and styles; tiles from OpenStreetMap when reachable.
    "Content-Security-Policy": (
        "default-src 'self'; img-src 'self' data: https://tile.openstreetmap.org; "
        "style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


def install_pages(app: FastAPI) -> None:
    """Serves the page at ``/`` and its files under ``/static``."""
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", headers=_SECURITY_HEADERS)
