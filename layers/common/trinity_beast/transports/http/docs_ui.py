"""GET /docs: Swagger UI served by this server, under a Content-Security-Policy.

FastAPI's default page loads Swagger UI from a public CDN: third-party code on an origin
where operators paste admin keys. The assets are vendored here instead (static/VENDORED.md:
version and SHA-256, checked by tests/test_admin_surfaces.py) and the page allows scripts
from this origin only.
"""

from __future__ import annotations

from importlib import resources

from fastapi import FastAPI
from fastapi.responses import Response

from trinity_beast.domain.envelope import Envelopes
from trinity_beast.transports.http.common import envelope_response

STATIC = resources.files(__package__).joinpath("static")
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
    "swagger-ui.css": "text/css; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
}
DOCS_HEADERS = {
    # Swagger UI sets style attributes from its scripts: styles may be inline, scripts may not.
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def add_docs(api: FastAPI, envelopes: Envelopes) -> None:
    """GET /docs and its files (create the app with docs_url=None)."""

    @api.get("/docs", include_in_schema=False)
    async def docs() -> Response:
        html = STATIC.joinpath("docs.html").read_bytes()
        return Response(
            html, media_type="text/html; charset=utf-8", headers={**DOCS_HEADERS, "Cache-Control": "no-cache"}
        )

    @api.get("/docs/static/{name}", include_in_schema=False)
    async def docs_static(name: str) -> Response:
        if name not in DOCS_FILES:
            return envelope_response(envelopes.error(f"/docs/static/{name[:60]}", 404, f"unknown file {name[:60]}"))
        body = STATIC.joinpath(name).read_bytes()
        return Response(
            body, media_type=DOCS_FILES[name], headers={**DOCS_HEADERS, "Cache-Control": "public, max-age=3600"}
        )
