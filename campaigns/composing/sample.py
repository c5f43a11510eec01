"""The sample render: a campaign personalized for a sample contact, as the composer and every send path check it.

A campaign that fails for the sample contact, or that draws from a coupon pool or carries a survey without showing
it in both parts of the message, cannot be sent: the composer lists the problem, and sending refuses with the fix.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.coupons import pools as coupon_service
from campaigns.models import Campaign, CouponPool, Survey
from campaigns.surveys import service as survey_service
from mailer.compose import CompiledCampaign, Rendered, TemplateError
from mailer.tracking import Purpose, TokenCodec

SAMPLE_CONTACT = {"email": "sample@example.com", "first_name": "", "last_name": "", "full_name": "",
                  "city": "", "country": "", "interests": []}
SAMPLE_SENDER = {"name": "Sample sender", "email": "sender@example.com", "postal_address": "Sample address",
                 "title": ""}
# Survey links of a check render point here and are sealed with a key of their own: nobody ever follows them.
PROBE_BASE_URL = "https://sample-check.invalid"


@functools.cache
def _probe_tokens() -> TokenCodec:
    return TokenCodec("rapport sample render: links made with this key are never followed")


@dataclass
class SampleAttachments:
    """What a campaign is attached to (coupon pool, survey), as template values for a sample recipient."""

    extras: dict[str, Any] = field(default_factory=dict)
    pool_name: str = ""          # "" when the campaign draws from no pool
    survey_name: str = ""        # "" when it carries no survey
    survey_prefix: str = ""      # every survey link starts with this
    pool_expired_on: dt.date | None = None

    def problems(self, rendered: Rendered, *, own_text: bool = False) -> list[str]:
        """What the rendered sample fails to show of the attachments, each naming the fix."""
        parts = (("HTML", rendered.html, "the content"),
                 ("plain-text", rendered.text, "the plain-text part" if own_text else "the content"))
        out = []
        if self.pool_expired_on is not None:
            out.append(f"the codes of the coupon pool “{self.pool_name}” expired on {self.pool_expired_on}: choose "
                       "another pool, or give this one a later “valid until” on its page")
        if self.pool_name:
            coupon = self.extras["coupon"]
            for label, body, where in parts:
                missing = [what for what, values in (("code", [coupon["code"]]),
                                                     ("expiry date", [coupon["expires"], coupon["expires_on"]]))
                           if not any(v in body for v in values)]
                if missing:
                    out.append(f"this campaign draws a code per recipient from the coupon pool “{self.pool_name}”, "
                               f"but its {label} part does not show the recipient's {' or '.join(missing)}: add "
                               "{{ coupon.code }} and “valid until {{ coupon.expires }}” to " + where
                               + " (or choose no pool)")
        if self.survey_name:
            for label, body, where in parts:
                if self.survey_prefix not in body:
                    out.append(f"this campaign carries the survey “{self.survey_name}”, but its {label} part has no "
                               "survey question: add {{ survey_block() }} to " + where + " (or choose no survey)")
        return out


def attachments(session: Session | None, coupon_pool_id: int | None, survey_id: int | None, *,
                base_url: str = PROBE_BASE_URL, tokens: TokenCodec | None = None) -> SampleAttachments:
    """The sample coupon (no real code used up) and survey links (recording nothing) of a pool and a survey."""
    pool = session.get(CouponPool, coupon_pool_id) if session is not None and coupon_pool_id else None
    out = SampleAttachments(extras={"coupon": coupon_service.sample_vars(pool)})
    if pool is not None:
        out.pool_name = pool.name
        out.pool_expired_on = pool.expires_on if pool.expired else None
    survey = session.get(Survey, survey_id) if session is not None and survey_id else None
    links = survey_service.SurveyLinks.for_campaign(session, Campaign(survey_id=survey_id), base_url=base_url,
                                                    tokens=tokens or _probe_tokens()) if survey is not None else None
    if links is not None:
        out.extras.update(links.context(0))
        out.survey_name, out.survey_prefix = survey.name, recipient_urls.prefix(base_url, Purpose.SURVEY)
    return out


def render(result: CompiledCampaign, extras: Mapping[str, Any], contact: Mapping[str, Any] | None = None,
           sender: Mapping[str, str] | None = None) -> Rendered:
    """The campaign as the sample contact (or contact) gets it; raises TemplateError."""
    ctx = {**extras, "contact": contact or SAMPLE_CONTACT, "sender": sender or SAMPLE_SENDER,
           "unsubscribe_url": "https://unsubscribe.invalid/sample", "preferences_url": "https://preferences.invalid/"}
    return result.render(ctx, lambda i: result.links[i], "")


def check(session: Session | None, campaign: Campaign, result: CompiledCampaign) -> None:
    """Render the campaign for the sample contact; raise TemplateError when that fails or an attachment is unseen."""
    found = attachments(session, campaign.coupon_pool_id, campaign.survey_id)
    try:
        rendered = render(result, found.extras)
    except TemplateError as exc:
        raise TemplateError(f"the template fails for a sample contact ({SAMPLE_CONTACT['email']}, no name): "
                            f"{exc.message}") from None
    problems = found.problems(rendered, own_text=bool(campaign.text_body.strip()))
    if problems:
        raise TemplateError("; ".join(problems))
