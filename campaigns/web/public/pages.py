"""Unsubscribe (RFC 8058 one-click POST and a page) and the preference center."""

from __future__ import annotations

from flask import Response, render_template, request
from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.db import parse_id
from campaigns.errors import NotFound, ValidationError
from campaigns.feedback import preferences as feedback
from campaigns.models import ContactStatus, Frequency, Topic
from campaigns.post import addresses as post_addresses
from campaigns.web.context import csrf, db, rt
from campaigns.web.public.blueprint import bp, open_token
from mailer.tracking import Purpose


@bp.route("/u/<token>", methods=["GET", "POST"])
@csrf.exempt   # RFC 8058: mail clients POST without cookies; the sealed token is the credential
def unsubscribe(token: str):
    """GET and HEAD show a page and change nothing (scanners follow links); only POST unsubscribes, at once."""
    contact_id, campaign_id = open_token(Purpose.UNSUBSCRIBE, token)
    prefs_token = rt().tokens.seal(Purpose.PREFERENCES, contact_id) if contact_id else ""
    try:
        scope = feedback.resolve_unsubscribe(db(), contact_id, campaign_id)
    except NotFound:
        return render_template("public/unsubscribe_done.html", test=True, everything=True, topics=[]), 200
    if request.method != "POST":   # HEAD too: link checkers send it to every link of a mail
        return render_template("public/unsubscribe.html", token=token, scope=scope, prefs_token=prefs_token)
    one_click = request.form.get("List-Unsubscribe") == "One-Click"
    # One-click (from the mail client's button) stops all mail: that is what the person pressing it expects.
    everything = one_click or request.form.get("scope", "all") != "topics"
    feedback.unsubscribe(db(), scope, everything=everything, source="one-click" if one_click else "page")
    db().commit()   # before the answer: "unsubscribed" must be true when the person reads it
    if one_click:
        return Response("Unsubscribed.\n", mimetype="text/plain")
    return render_template("public/unsubscribe_done.html", test=False, everything=everything or not scope.topics,
                           topics=scope.topics, prefs_token=prefs_token)


def _pause_weeks(raw: str | None) -> int | None:
    if raw in (None, "", "keep"):
        return None
    if not raw.isdigit() or len(raw) > 3:
        raise ValidationError("choose a pause of 2, 4, 8 or 12 weeks", field="pause")
    return int(raw)


@bp.route("/p/<token>", methods=["GET", "POST"])
def preferences(token: str):
    """Preference center: topics, how often, a pause, name, resubscribe; with the consent history."""
    (contact_id,) = open_token(Purpose.PREFERENCES, token)
    if not contact_id:     # the link of a test message: it names no contact
        return render_template("public/unsubscribe_done.html", test=True, everything=True, topics=[])
    session = db()
    contact = feedback.resolve_unsubscribe(session, contact_id, 0).contact
    changes: list[str] = []
    error = ""
    if request.method == "POST":
        form = request.form
        ids = [t for t in map(parse_id, form.getlist("topics")[:200]) if t is not None]
        try:
            changes = feedback.update_preferences(
                session, contact, topic_ids=ids, first_name=form.get("first_name", ""),
                last_name=form.get("last_name", ""), resubscribe=form.get("resubscribe") == "1",
                frequency=form.get("frequency") or None, pause_weeks=_pause_weeks(form.get("pause")))
            changes = _post_choice(session, contact.id, form.get("no_post") == "1", changes)
            session.commit()
        except ValidationError as exc:
            session.rollback()
            error = str(exc)
    topics = list(session.scalars(select(Topic).where(Topic.public.is_(True)).order_by(Topic.name)))
    subscribed = {s.topic_id for s in contact.subscriptions if s.subscribed}
    status = 200 if not error else 422
    return render_template(
        "public/preferences.html", contact=contact, topics=topics, subscribed=subscribed, changes=changes,
        error=error, unsubscribed=contact.status == ContactStatus.UNSUBSCRIBED,
        blocked=contact.status in (ContactStatus.BOUNCED, ContactStatus.COMPLAINED),
        paused=feedback.is_paused(contact), frequencies=feedback.FREQUENCY_LABELS, Frequency=Frequency,
        pause_weeks=feedback.PAUSE_WEEKS, history=feedback.consent_history(session, contact.id, 10),
        token=token, no_post=post_addresses.no_post(session, contact.id)), status


def _post_choice(session: Session, contact_id: int, no_post: bool, changes: list[str]) -> list[str]:
    """Apply the "no letters or cards by post" box (campaigns.post) and say so with the other changes; the view
    commits."""
    if not post_addresses.set_no_post(session, contact_id, no_post, source="preference center"):
        return changes
    said = "You will get no letters or cards by post." if no_post else "Letters and cards by post are welcome again."
    return [c for c in changes if c != "Nothing changed."] + [said]

