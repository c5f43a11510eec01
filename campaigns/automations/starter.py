"""The post-purchase starter: a ready "Thank you for your order" + "How did it go?" + "Leave a review" automation.

One call creates the three draft campaigns from the composer's starters (order_thanks: transactional, at once;
order_survey: nurture with a one-click survey, after 3 days; order_review: nurture, after 14 days, its button on the
shop's review page), the survey the second one carries, and the automation (trigger "order", switched off) that
sends them. The marketer reviews the texts and switches it on.
"""

from __future__ import annotations

import html
from urllib.parse import urlsplit

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from campaigns.automations import runs
from campaigns.composing import starters
from campaigns.composing.editor import save_campaign
from campaigns.errors import ValidationError
from campaigns.models import Automation, Campaign, QuestionKind, Survey
from campaigns.surveys.service import save_survey

REVIEW_PLACEHOLDER = "https://shop.example/reviews"
STEPS = (("order_thanks", "0"), ("order_survey", "3d"), ("order_review", "14d"))
QUESTIONS = (
    {"prompt": "How did your order go?", "kind": QuestionKind.RATING},
    {"prompt": "Did everything arrive as you expected?", "kind": QuestionKind.YES_NO},
    {"prompt": "What could we do better?", "kind": QuestionKind.TEXT},
)


def review_url(raw: str) -> str:
    """The shop's review page: an absolute http(s) URL."""
    url = str(raw or "").strip()
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or len(url) > 500 or any(
            c.isspace() or ord(c) < 32 for c in url):
        raise ValidationError("enter the address of your review page, such as https://shop.example/reviews",
                              field="review_url")
    return url


def _free(session: Session, model: type[Automation] | type[Campaign] | type[Survey], name: str) -> str:
    """name, or name (2), (3)… when taken."""
    taken = {n.lower() for n in session.scalars(select(model.name).where(func.lower(model.name).like(
        f"{name.lower()}%")))}
    candidate, n = name, 1
    while candidate.lower() in taken:
        n += 1
        candidate = f"{name} ({n})"
    return candidate


def create_post_purchase(session: Session, raw_review_url: str, name: str = "Post-purchase") -> Automation:
    """Create the survey, the three template campaigns and the automation (off); flushed, the caller commits."""
    url = review_url(raw_review_url)
    name = name.strip()[:150] or "Post-purchase"
    survey = save_survey(session, {"name": _free(session, Survey, f"{name}: how did it go?"),
                                   "thanks": "Thank you — that helps us a lot."}, [dict(q) for q in QUESTIONS])
    steps: list[tuple[str, str]] = []
    for key, delay in STEPS:
        start = starters.starter(key)
        if start is None:
            raise ValidationError(f"the starter template {key} is missing from this installation")
        mjml = start.mjml.replace(REVIEW_PLACEHOLDER, html.escape(url, quote=True))
        data = {"name": _free(session, Campaign, f"{name}: {start.title}"), "kind": start.kind,
                "subject": start.subject, "preheader": start.preheader, "mjml": mjml, "sender": "default",
                "all_contacts": "1", "survey_id": str(survey.id) if key == "order_survey" else ""}
        campaign = save_campaign(session, data)
        campaign.survey_id = survey.id if key == "order_survey" else None
        steps.append((delay, str(campaign.id)))
    session.flush()
    return runs.save_automation(session, {"name": _free(session, Automation, name), "trigger": "order"}, steps)
