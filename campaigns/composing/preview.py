"""The composer's preview of unsaved content: compiled and rendered for one contact, with every problem at its
MJML line, which links are tracked, and the contact picker's look-ups."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, or_, select
from sqlalchemy.orm import Session

from campaigns.composing import sample
from campaigns.composing.editor import MAX_SOURCE_CHARS, check_compliance
from campaigns.models import Contact
from mailer.compose import CampaignSource, CompiledCampaign, TemplateError, compile_campaign, is_personalised


@dataclass
class Preview:
    """What the composer shows: the HTML (empty when it cannot compile), text part, subject and problems."""

    html: str = ""
    text: str = ""
    subject: str = ""
    errors: list[dict[str, Any]] | None = None
    links: list[dict[str, Any]] | None = None    # every web link: url, tracked, and why when not

    def as_json(self) -> dict[str, Any]:
        return {"ok": not self.errors, "subject": self.subject, "text": self.text, "errors": self.errors or [],
                "links": self.links or []}


def link_report(result: CompiledCampaign) -> list[dict[str, Any]]:
    """Which links of a compiled campaign are click-tracked, in the words the composer shows."""
    out: list[dict[str, Any]] = [
        {"url": url, "tracked": True,
         "note": "tracked, personalised per recipient" if is_personalised(url) else "tracked"}
        for url in result.links]
    for url in result.untracked:
        if url.startswith(("{{", "{%")):
            note = "not tracked: the whole address comes from template code"
        elif is_personalised(url):
            note = "not tracked: template code in the site name (only the path and query may be personalised)"
        else:
            note = "not tracked"
        out.append({"url": url, "tracked": False, "note": note})
    return out


def preview(source: CampaignSource, kind: str, sender: Mapping[str, str], contact_vars: Mapping[str, Any],
            extras: Mapping[str, Any] | None = None, found: sample.SampleAttachments | None = None) -> Preview:
    """Compile unsaved content and render it for one contact; problems come back with their MJML line.

    With found (the chosen pool and survey), content that does not show them is a problem too."""
    out = Preview(errors=[])
    if not source.mjml.strip():
        out.errors.append({"line": None, "message": "the campaign has no content yet"})
        return out
    if len(source.mjml) > MAX_SOURCE_CHARS:
        out.errors.append({"line": None, "message": f"the content is longer than {MAX_SOURCE_CHARS:,} characters"})
        return out
    try:
        result = compile_campaign(source)
    except TemplateError as exc:
        out.errors.append({"line": exc.line, "message": exc.message})
        return out
    try:
        check_compliance(kind, result, sender, extras)
    except TemplateError as exc:
        out.errors.append({"line": None, "message": exc.message})
    ctx = {**(extras or {}), "contact": contact_vars, "sender": sender, "unsubscribe_url": "#unsubscribe",
           "preferences_url": "#preferences"}
    try:
        rendered = result.render(ctx, lambda i: result.links[i], "")
    except TemplateError as exc:
        # exc.line is the editor line when the failing code could be found there (mailer.sourcemap).
        out.errors.append({"line": exc.line, "message": f"while personalizing for {contact_vars.get('email')}: "
                                                        f"{exc.message}"})
        return out
    out.html, out.text, out.subject = rendered.html, rendered.text, rendered.subject
    if found is not None:
        out.errors.extend({"line": None, "message": m} for m in found.problems(rendered,
                                                                              own_text=bool(source.text_body.strip())))
    out.links = link_report(result)
    return out


def find_contacts(session: Session, query: str, limit: int = 10) -> list[Contact]:
    """Contacts whose address or name starts with query (the composer's 'preview as' picker)."""
    q = query.strip().lower()[:100]
    if not q:
        return list(session.scalars(select(Contact).order_by(Contact.id).limit(limit)))
    pattern = q.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    return list(session.scalars(select(Contact).where(or_(
        Contact.email.like(pattern, escape="\\"),
        func.lower(Contact.first_name).like(pattern, escape="\\"),
        func.lower(Contact.last_name).like(pattern, escape="\\"))).order_by(Contact.email).limit(limit)))


def contact_by_email_or_id(session: Session, value: str) -> Contact | None:
    """The contact a picker names, by id or (case-insensitive) address; None when there is none."""
    value = value.strip()
    if value.isdigit():
        return session.get(Contact, int(value))
    if "@" in value:
        return session.scalar(select(Contact).where(Contact.email == value.lower()))
    return None
