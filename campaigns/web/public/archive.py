"""The public archive (campaigns.archive.issues): a topic's list of issues, each issue, and the topic's Atom feed.

Public pages without a token: they show nothing of any recipient (issues are rendered for a neutral contact), are
cacheable (Cache-Control, ETag, 304 on If-None-Match), answer 404 for anything not archived and sent, and the
issue page, being campaign HTML, is served under the same sandboxing CSP as the web version of a message.
"""

from __future__ import annotations

import hashlib

from flask import Response, redirect, render_template, request, url_for
from markupsafe import escape

from campaigns.archive import atom, issues
from campaigns.errors import NotFound
from campaigns.web.context import db, rt
from campaigns.web.public.blueprint import bp
from campaigns.web.public.digest import WEB_VERSION_CSP
from mailer.compose import TemplateError, web_page

CACHE = "public, max-age=300"
_MAIN = "<main>"


def _not_found(message: str):
    return render_template("public/error.html", code=404, title="Not in the archive", message=message), 404


def _cached(resp: Response) -> Response:
    resp.headers["Cache-Control"] = CACHE
    resp.set_etag(hashlib.sha256(resp.get_data()).hexdigest()[:32])
    return resp.make_conditional(request)


def _urls(topic) -> tuple[str, str, str]:
    """(index, issue format with {slug}, feed) absolute URLs of a topic's archive."""
    base = rt().settings.base_url
    ref = issues.topic_ref(topic)
    return f"{base}/archive/{ref}", f"{base}/archive/{ref}/{{slug}}", f"{base}/archive/{ref}/feed.atom"


@bp.route("/archive/<ref>", methods=["GET", "HEAD"])
def archive_index(ref: str):
    session = db()
    try:
        topic = issues.find_topic(session, ref)
    except NotFound:
        return _not_found("There is no such archive.")
    if ref != issues.topic_ref(topic):   # the topic was renamed, or the name left out: the one address
        return redirect(url_for("public.archive_index", ref=issues.topic_ref(topic)), code=301)
    settings = rt().settings
    entries = issues.entries(session, settings, topic)
    if not entries:
        return _not_found("This archive has no issues yet.")
    index_url, issue_url, feed_url = _urls(topic)
    html = render_template("public/archive.html", topic=topic, entries=entries, issue_url=issue_url,
                           feed_url=feed_url, signup_url=issues.signup_url(session, settings, topic.id))
    return _cached(Response(html, mimetype="text/html"))


@bp.route("/archive/<ref>/feed.atom", methods=["GET", "HEAD"])
def archive_feed(ref: str):
    session = db()
    try:
        topic = issues.find_topic(session, ref)
    except NotFound:
        return _not_found("There is no such archive.")
    if ref != issues.topic_ref(topic):
        return redirect(url_for("public.archive_feed", ref=issues.topic_ref(topic)), code=301)
    settings = rt().settings
    entries = issues.entries(session, settings, topic, limit=issues.FEED_LENGTH)
    if not entries:
        return _not_found("This archive has no issues yet.")
    index_url, issue_url, feed_url = _urls(topic)
    body = atom.feed(title=f"{topic.name} · {settings.sender_name}", subtitle=topic.description,
                     index_url=index_url, feed_url=feed_url, author=settings.sender_name, entries=entries,
                     issue_url=issue_url, fallback_updated=topic.created_at)
    return _cached(Response(body, mimetype=atom.MEDIA_TYPE))


@bp.route("/archive/<ref>/<slug>", methods=["GET", "HEAD"])
def archive_issue(ref: str, slug: str):
    session = db()
    settings = rt().settings
    try:
        topic = issues.find_topic(session, ref)
        if ref != issues.topic_ref(topic):
            return redirect(url_for("public.archive_issue", ref=issues.topic_ref(topic), slug=slug), code=301)
        campaign = issues.find_issue(session, topic, slug)
        index_url, _issue, feed_url = _urls(topic)
        signup = issues.signup_url(session, settings, topic.id)
        rendered = issues.render_neutral(session, settings, campaign)
    except NotFound as exc:
        return _not_found(f"Sorry: {exc}.")
    except TemplateError:
        return _not_found("Sorry: this issue cannot be shown any more.")
    links = [f'<a href="{escape(index_url)}" style="color:#1d4ed8">All issues of {escape(topic.name)}</a>',
             f'<a href="{escape(feed_url)}" style="color:#1d4ed8">Atom feed</a>']
    if signup:
        links.insert(1, f'<a href="{escape(signup)}" style="color:#1d4ed8">Subscribe</a>')
    banner = ('<nav aria-label="Archive" style="max-width:600px;margin:0 auto;padding:12px 16px;'
              'font:14px/1.5 Helvetica,Arial,sans-serif;color:#374151">' + " · ".join(links) + "</nav>")
    page = web_page(rendered.html)
    page = page.replace(_MAIN, _MAIN + banner, 1) if _MAIN in page else banner + page
    resp = Response(page, mimetype="text/html", headers={"Content-Security-Policy": WEB_VERSION_CSP})
    return _cached(resp)
