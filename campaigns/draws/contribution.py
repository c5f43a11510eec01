"""The draw's part in a message (campaigns.composing.contributions): `draw_url()` per recipient, the one-click
entry link sealed to (draw, contact) — Purpose.DRAW. It opens a page that shows the rules and enters on POST only.

`draw_url()` is the link to the open draw (the one opened last when several are open); `draw_url("<public id>")`
names one (its public id is on the draw's admin page). In a test message (no contact) the link opens a page that
says so and enters nobody. Registered when this module is imported (campaigns.capabilities).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.composing.contributions import Contributor, Recipient, SampleContribution, register
from campaigns.draws.service import VIA_MAIL, VIA_PAGE, open_draws
from campaigns.models import Campaign
from mailer.compose import TemplateError
from mailer.tracking import Purpose, TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime


@dataclass(frozen=True)
class DrawLinks:
    """The open draws (public id -> id, the first is the default) and what sealing a link needs."""

    draws: dict[str, int]
    base_url: str
    tokens: TokenCodec
    via: int = VIA_MAIL            # VIA_PAGE in the entry-link mail a subscriber asked for on the public page

    def url(self, contact_id: int, public_id: str | None = None) -> str:
        if not self.draws:
            raise TemplateError("draw_url(): no prize draw is open; open one under Draws or remove the link")
        draw_id = next(iter(self.draws.values())) if public_id is None else self.draws.get(str(public_id))
        if draw_id is None:
            raise TemplateError(f"draw_url({public_id!r}): no open draw has this public id")
        return recipient_urls.sealed(self.base_url, self.tokens, Purpose.DRAW, draw_id, contact_id, self.via)

    def context(self, contact_id: int) -> dict[str, Any]:
        return {"draw_url": lambda public_id=None: self.url(contact_id, public_id)}


def _links(session: Session | None, base_url: str, tokens: TokenCodec, campaign_id: int | None = None) -> DrawLinks:
    found = open_draws(session) if session is not None else []
    via = VIA_PAGE if campaign_id is not None and any(d.link_campaign_id == campaign_id for d in found) else VIA_MAIL
    return DrawLinks({d.public_id: d.id for d in found}, base_url, tokens, via)


class Draws(Contributor):
    """Every message may carry a one-click entry to an open prize draw."""

    name = "draws"
    order = 25

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        # Always offered, so a template that uses draw_url() while no draw is open fails with the reason.
        return SampleContribution(_links(session, base_url, tokens).context(0))

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> DrawLinks | None:
        return _links(session, rt.settings.base_url, rt.tokens, campaign.id)

    def variables(self, state: DrawLinks, recipient: Recipient) -> dict[str, Any]:
        return state.context(recipient.contact_id)

    def recall(self, rt: Runtime, session: Session, campaign: Campaign, send_id: int,
               contact_id: int) -> dict[str, Any]:
        links = self.prepare(rt, session, campaign)
        return links.context(contact_id) if links is not None else {}


register(Draws())
