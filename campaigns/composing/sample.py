"""The sample render: a campaign personalized for a sample contact, as the composer and every send path check it.

A campaign that fails for the sample contact, or that carries something a feature needs shown (a coupon pool's
code, a survey's question: campaigns.composing.contributions) without showing it in both parts of the message,
cannot be sent: the composer lists the problem, and sending refuses with the fix.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.orm import Session

from campaigns.composing import contributions
from campaigns.composing.contributions import Parts
from campaigns.models import Campaign
from mailer.compose import CompiledCampaign, Rendered, TemplateError
from mailer.tracking import TokenCodec

SAMPLE_CONTACT = {"email": "sample@example.com", "first_name": "", "last_name": "", "full_name": "",
                  "city": "", "country": "", "interests": [], "tier": ""}
SAMPLE_SENDER = {"name": "Sample sender", "email": "sender@example.com", "postal_address": "Sample address",
                 "title": ""}
# Links of a check render point here and are sealed with a key of their own: nobody ever follows them.
PROBE_BASE_URL = "https://sample-check.invalid"


@functools.cache
def _probe_tokens() -> TokenCodec:
    return TokenCodec("rapport sample render: links made with this key are never followed")


@dataclass
class SampleAttachments:
    """What a campaign is attached to (a coupon pool, a survey…), as template values for a sample recipient."""

    extras: dict[str, Any] = field(default_factory=dict)
    checks: list[Callable[[Parts], list[str]]] = field(default_factory=list)

    def problems(self, rendered: Rendered, *, own_text: bool = False) -> list[str]:
        """What the rendered sample fails to show of the attachments, each naming the fix."""
        parts = (("HTML", rendered.html, "the content"),
                 ("plain-text", rendered.text, "the plain-text part" if own_text else "the content"))
        return [problem for check in self.checks for problem in check(parts)]


def attachments(session: Session | None, choices: Mapping[str, Any], *, base_url: str = PROBE_BASE_URL,
                tokens: TokenCodec | None = None) -> SampleAttachments:
    """Every contributor's sample values (no real code used up, nothing recorded) for a campaign whose
    contributed attributes (coupon_pool_id, survey_id…) are choices: see contributions.attributes_of."""
    out = SampleAttachments()
    for contributor in contributions.contributors():
        got = contributor.sample(session, choices, base_url=base_url, tokens=tokens or _probe_tokens())
        if got is None:
            continue
        out.extras.update(got.variables)
        if got.check is not None:
            out.checks.append(got.check)
    return out


def render(result: CompiledCampaign, extras: Mapping[str, Any], contact: Mapping[str, Any] | None = None,
           sender: Mapping[str, str] | None = None) -> Rendered:
    """The campaign as the sample contact (or contact) gets it; raises TemplateError."""
    ctx = {**extras, "contact": contact or SAMPLE_CONTACT, "sender": sender or SAMPLE_SENDER,
           "unsubscribe_url": "https://unsubscribe.invalid/sample", "preferences_url": "https://preferences.invalid/"}
    return result.render(ctx, lambda i: result.links[i], "")


def check(session: Session | None, campaign: Campaign, result: CompiledCampaign) -> None:
    """Render the campaign for the sample contact; raise TemplateError when that fails or an attachment is unseen."""
    found = attachments(session, contributions.attributes_of(campaign))
    try:
        rendered = render(result, found.extras)
    except TemplateError as exc:
        raise TemplateError(f"the template fails for a sample contact ({SAMPLE_CONTACT['email']}, no name): "
                            f"{exc.message}") from None
    problems = found.problems(rendered, own_text=bool(campaign.text_body.strip()))
    if problems:
        raise TemplateError("; ".join(problems))
