"""The web version of a message (/m/<token>): what a digest's "Read it" links open.

The token (Purpose.WEB) seals the send id; a forged or altered one gets the friendly 404 before the database is read.
The body is campaign HTML, so it is served under a sandboxing CSP like the admin preview: no scripts, forms or plugins.
"""

from __future__ import annotations

import logging

from flask import Response, render_template

from campaigns.errors import NotFound
from campaigns.sending import digest as digest_service
from campaigns.web.context import db, rt
from campaigns.web.public.blueprint import bp, open_token
from mailer.compose import web_page
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)

WEB_VERSION_CSP = ("sandbox allow-popups allow-popups-to-escape-sandbox; default-src 'none'; img-src * data:; "
                   "style-src 'unsafe-inline' *; font-src * data:; frame-ancestors 'none'; base-uri 'none'; "
                   "form-action 'none'")


@bp.route("/m/<token>", methods=["GET", "HEAD"])
def web_version(token: str):
    """A send's message rendered for its contact, as it was (or would have been) mailed."""
    (send_id,) = open_token(Purpose.WEB, token)
    try:
        html = digest_service.web_version(rt(), db(), send_id)
        db().commit()   # a link table the message needed is stored with it
    except NotFound as exc:
        return render_template("public/error.html", code=404, title="This message is not available",
                               message=f"Sorry: {exc}."), 404
    return Response(web_page(html), mimetype="text/html", headers={"Content-Security-Policy": WEB_VERSION_CSP,
                                                         "Cache-Control": "private, no-store"})
