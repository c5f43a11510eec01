"""Signup forms (admin): create and edit them, the hosted page's URL and the snippet a website embeds.

Changing a form's consent text bumps its version, so a signup always records the text the person saw.
"""

from __future__ import annotations

import html
import secrets
from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.errors import NotFound, ValidationError
from campaigns.models import Signup, SignupForm, SignupStatus, Topic

MAX_CONSENT_TEXT = 5000
HONEYPOT = "website"                        # a field people never see and bots fill in


def list_forms(session: Session) -> list[tuple[SignupForm, int, int]]:
    """Every form with its pending and confirmed signup counts."""
    counts: dict[tuple[int, str], int] = {
        (f, s): n for f, s, n in session.execute(
            select(Signup.form_id, Signup.status, func.count()).group_by(Signup.form_id, Signup.status))}
    forms = session.scalars(select(SignupForm).order_by(SignupForm.name))
    return [(f, counts.get((f.id, SignupStatus.PENDING), 0), counts.get((f.id, SignupStatus.CONFIRMED), 0))
            for f in forms]


def get_form(session: Session, form_id: int) -> SignupForm:
    """One form by id, or NotFound."""
    form = session.get(SignupForm, form_id)
    if form is None:
        raise NotFound("this signup form does not exist")
    return form


def public_form(session: Session, public_id: str) -> SignupForm:
    """The active form a public URL names, or NotFound."""
    if not public_id or len(public_id) > 32:
        raise NotFound("no such form")
    form = session.scalar(select(SignupForm).where(SignupForm.public_id == public_id))
    if form is None or not form.active:
        raise NotFound("no such form")
    return form


def public_topics(session: Session) -> list[Topic]:
    """Topics a form may offer (public ones)."""
    return list(session.scalars(select(Topic).where(Topic.public.is_(True)).order_by(Topic.name)))


def save_form(session: Session, data: Mapping[str, Any], topic_ids: Iterable[int | str],
              form: SignupForm | None = None) -> SignupForm:
    """Create or update a form; changing the consent text bumps its version. Raises ValidationError; flushes."""
    name = str(data.get("name", "") or "").strip()
    title = str(data.get("title", "") or "").strip()
    intro = str(data.get("intro", "") or "").strip()
    consent = str(data.get("consent_text", "") or "").strip().replace("\r\n", "\n")
    for label, value, limit in (("name", name, 200), ("title", title, 200), ("introduction", intro, 2000),
                                ("consent text", consent, MAX_CONSENT_TEXT)):
        if "\x00" in value:
            raise ValidationError(f"the {label} contains a NUL character", field=label)
        if len(value) > limit:
            raise ValidationError(f"the {label} is longer than {limit:,} characters", field=label)
    if not name:
        raise ValidationError("give the form a name", field="name")
    if not consent:
        raise ValidationError("write the consent text people agree to (what they get, how often, how to leave)",
                              field="consent_text")
    clash = session.scalar(select(SignupForm.id).where(SignupForm.name == name))
    if clash is not None and (form is None or clash != form.id):
        raise ValidationError(f"there is already a form called {name!r}", field="name")
    try:
        wanted = {int(t) for t in topic_ids}
    except (TypeError, ValueError):
        raise ValidationError("unknown topic", field="topics") from None
    topics = [t for t in public_topics(session) if t.id in wanted]
    if len(topics) != len(wanted):
        raise ValidationError("a form can only offer public topics", field="topics")
    if not topics:
        raise ValidationError("choose at least one topic people can sign up for", field="topics")
    if form is None:
        form = SignupForm(public_id=secrets.token_urlsafe(9), consent_text=consent, consent_version=1)
        session.add(form)
    elif consent != form.consent_text:
        form.consent_version += 1
        form.consent_text = consent
    form.name, form.title, form.intro = name, title or name, intro
    if "active" in data:
        form.active = is_checked(data["active"])
    elif form.active is None:
        form.active = True
    form.topics = topics
    session.flush()
    return form


def is_checked(value: object) -> bool:
    """Whether a submitted checkbox or flag value means yes ("1", "on", "true", "yes")."""
    return str(value).strip().lower() in ("1", "on", "true", "yes")


def hosted_url(form: SignupForm, base_url: str) -> str:
    """The hosted page of a form (also where the snippet posts)."""
    return recipient_urls.signup_form(base_url, form.public_id)


def embed_snippet(form: SignupForm, base_url: str) -> str:
    """HTML a website pastes to show the form; it posts to the hosted endpoint (no script, no cookies)."""
    e = html.escape
    topics = "\n".join(
        f'  <label><input type="checkbox" name="topics" value="{t.id}" checked> {e(t.name)}</label><br>'
        for t in form.topics)
    return (
        f'<form action="{e(hosted_url(form, base_url))}" method="post" accept-charset="utf-8">\n'
        f'  <label>Email <input type="email" name="email" required maxlength="320" autocomplete="email"></label><br>\n'
        f'  <label>First name (optional) <input name="first_name" maxlength="200" autocomplete="given-name">'
        f'</label><br>\n'
        f'{topics}\n'
        f'  <p>{e(form.consent_text)}</p>\n'
        f'  <label><input type="checkbox" name="consent" value="yes" required> I agree</label><br>\n'
        f'  <input type="hidden" name="consent_version" value="{form.consent_version}">\n'
        f'  <!-- leave this trap for bots hidden and empty -->\n'
        f'  <div style="position:absolute;left:-10000px" aria-hidden="true">'
        f'<input name="{HONEYPOT}" tabindex="-1" autocomplete="off"></div>\n'
        f'  <button type="submit">Subscribe</button>\n'
        f'</form>'
    )
