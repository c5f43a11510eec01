"""API: the OpenAPI document (/api/v1/openapi.json), its rendered reference (/api/docs, Swagger UI served from
campaigns/static/vendor, no CDN), and problem+json answers for unknown paths and methods under /api/v1."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from flask import Response, current_app, json, request, url_for
from markupsafe import escape
from werkzeug.exceptions import MethodNotAllowed, NotFound

from campaigns.web.api.blueprint import bp
from campaigns.web.api.problems import ApiProblem
from campaigns.web.api.spec import API_PREFIX, openapi

# Swagger UI sets inline style attributes from script (allowed by style-src 'self' only through the CSSOM) and
# shows data: images; nothing is loaded from another origin.
DOCS_CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'self'")
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


def api_version() -> str:
    try:
        return version("rapport")
    except PackageNotFoundError:     # running from a checkout that was never installed
        return "0"


@bp.get(f"{API_PREFIX}/openapi.json")
def openapi_document() -> Response:
    """The OpenAPI 3.1 document, built from the operations' pydantic models (campaigns.web.api.spec)."""
    doc = current_app.extensions.get("rapport-openapi")
    if doc is None:
        doc = current_app.extensions["rapport-openapi"] = json.dumps(openapi(api_version()))
    return Response(doc, mimetype="application/json", headers={"Cache-Control": "no-cache"})


@bp.get("/api/docs")
def api_docs() -> Response:
    """The API reference, rendered by the vendored Swagger UI."""
    html = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Rapport API reference</title>
<link rel="icon" href="{escape(url_for('static', filename='favicon.svg'))}" type="image/svg+xml">
<link rel="stylesheet" href="{escape(url_for('static', filename='vendor/swagger-ui.css'))}">
</head><body>
<div id="swagger-ui" data-spec="{escape(url_for('api.openapi_document'))}"></div>
<noscript><p>The reference needs JavaScript. The document itself is at
<a href="{escape(url_for('api.openapi_document'))}">{escape(url_for('api.openapi_document'))}</a>.</p></noscript>
<script src="{escape(url_for('static', filename='vendor/swagger-ui-bundle.js'))}"></script>
<script src="{escape(url_for('static', filename='api-docs.js'))}"></script>
</body></html>"""
    return Response(html, mimetype="text/html", headers={"Content-Security-Policy": DOCS_CSP})


@bp.route(f"{API_PREFIX}/<path:rest>", methods=ALL_METHODS)
def unknown(rest: str) -> Response:
    """Paths under /api/v1 that match no operation (or not with this method): 404 or 405 as problem+json."""
    adapter = current_app.url_map.bind_to_environ(request.environ)
    allowed = set()
    for method in ALL_METHODS:
        try:
            endpoint, _args = adapter.match(request.path, method=method)
        except (NotFound, MethodNotAllowed):
            continue
        if endpoint != "api.unknown":
            allowed.add(method)
    if allowed:
        raise ApiProblem(405, f"{request.method} is not allowed here; use {', '.join(sorted(allowed))}",
                         headers={"Allow": ", ".join(sorted(allowed))})
    raise ApiProblem(404, "no API operation at this path (see /api/v1/openapi.json)")
