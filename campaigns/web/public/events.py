"""The event reply page (/e/<token>) and the event's calendar file (/e/<token>.ics).

Links are sealed tokens (Purpose.EVENT: send id, answer code); a forged or altered one gets the friendly 404 before
the database is read. GET and HEAD show the event with the clicked answer preselected and never record anything
(mail scanners open every link); the page's POST records the answer, and a new place is confirmed by a
transactional mail with the .ics attached (campaigns.events.confirmation). A promotion off the waitlist is mailed right
after the commit (campaigns.events.mailings; the periodic job retries).
"""

from __future__ import annotations

import logging

from flask import Response, render_template, request
from redis.exceptions import RedisError

from campaigns import queueing
from campaigns.errors import NotFound, ValidationError
from campaigns.events import confirmation, ics, replies, service
from campaigns.models import ReplyAnswer
from campaigns.web.context import csrf, db, rt
from campaigns.web.public.blueprint import bp, open_token
from mailer.tracking import Purpose

logger = logging.getLogger(__name__)


def _unavailable(message: str):
    return render_template("public/error.html", code=404, title="This invitation is not available",
                           message=message), 404


@bp.route("/e/<token>", methods=["GET", "HEAD", "POST"])
@csrf.exempt   # the sealed token is the credential (no cookie needed)
def event_reply(token: str):
    send_id, code = open_token(Purpose.EVENT, token)
    if send_id == 0:
        return render_template("public/event_done.html", test=True), 200
    session = db()
    try:
        invitation = replies.open_invitation(session, send_id)
    except NotFound as exc:
        return _unavailable(f"Sorry: {exc}.")
    event = invitation.event
    current = invitation.reply.answer if invitation.reply is not None and invitation.reply.answer else ""
    error = ""
    chosen = current if current != ReplyAnswer.WAITLIST else ReplyAnswer.YES.value
    clicked = None
    if request.method == "POST":
        try:
            answer = replies.parse_answer(request.form.get("answer"))
        except ValidationError as exc:
            error = str(exc)
        else:
            outcome = replies.record(session, invitation, answer)
            if outcome == ReplyAnswer.YES and current != ReplyAnswer.YES:
                confirmation.send(rt(), session, invitation)    # the place, with the .ics attached
            session.commit()
            if current == ReplyAnswer.YES and outcome != ReplyAnswer.YES:
                try:    # tell whoever the waitlist moved up now; the periodic job does it otherwise
                    queueing.enqueue(rt().queue, queueing.Job.EVENT_MAIL)
                except RedisError:
                    logger.warning("event mail not queued now (Redis unavailable); the periodic job will")
            position = replies.waitlist_position(session, invitation.reply)
            return render_template("public/event_done.html", test=False, event=event, outcome=outcome.value,
                                   position=position, when=service.when(event),
                                   remaining=service.remaining(event), token=token)
    else:
        clicked = replies.answer_of_code(code)
        if clicked is not None:
            chosen = clicked.value
    return render_template("public/event.html", event=event, when=service.when(event), chosen=chosen,
                           clicked=clicked.value if clicked else None, current=current, error=error,
                           remaining=service.remaining(event), token=token), 422 if error else 200


@bp.route("/e/<token>.ics", methods=["GET", "HEAD"])
def event_calendar(token: str):
    send_id, _code = open_token(Purpose.EVENT, token)
    session = db()
    try:
        event = replies.open_invitation(session, send_id).event if send_id else None
    except NotFound:
        event = None
    if event is None:
        return _unavailable("Sorry: this event is no longer on file.")
    body = ics.calendar(event, base_url=rt().settings.base_url)
    return Response(body, mimetype="text/calendar", headers={
        "Content-Disposition": f'attachment; filename="event-{event.id}.ics"'})
