"""The event's part in a message (campaigns.composing.contributions): per recipient `event` (title, when, place,
link, places left), `event_url(answer)` — one-click yes / no / maybe links sealed to their send (Purpose.EVENT) —,
`event_calendar_url` (the .ics file) and `event_block()`, the question with its three buttons.

A campaign carries an event when the event is attached to it (the admin's event page) or when the event sent it
itself (a reminder, a 'you are in' note: campaigns.events.mailings). Registered when this module is imported
(campaigns.capabilities).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from markupsafe import escape
from sqlalchemy.orm import Session

from campaigns import recipient_urls
from campaigns.composing.contributions import Contributor, Hold, Recipient, SampleContribution, register
from campaigns.events import replies, service
from campaigns.models import CalendarEvent, Campaign, CampaignKind
from mailer.tracking import Purpose, TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

LABELS = {"yes": "Yes, I'll come", "no": "No", "maybe": "Maybe"}
SAMPLE = {"title": "Autumn tasting evening", "when": "Thursday 10 December 2026, 18:30 (Europe/Paris)",
          "place": "12 rue des Vignes, Paris", "link": "", "zone": "Europe/Paris", "description": "",
          "capacity": 40, "remaining": 12}


@dataclass(frozen=True)
class EventLinks:
    """What a campaign's messages need to carry its event, built once per batch."""

    details: dict[str, Any]
    base_url: str
    tokens: TokenCodec

    @classmethod
    def of(cls, event: CalendarEvent, *, base_url: str, tokens: TokenCodec) -> EventLinks:
        return cls({"title": event.title, "when": service.when(event), "place": event.place, "link": event.link,
                    "zone": event.zone, "description": event.description, "capacity": event.capacity,
                    "remaining": service.remaining(event)}, base_url, tokens)

    def url(self, send_id: int, answer: str | None = None) -> str:
        code = 0
        if answer is not None:
            try:
                code = replies.code_of(answer)
            except ValueError:
                raise ValueError(f"event_url({answer!r}): the answers are yes, no and maybe") from None
        return recipient_urls.sealed(self.base_url, self.tokens, Purpose.EVENT, send_id, code)

    def block(self, send_id: int) -> _Block:
        d = self.details
        where = d["place"] or d["link"]
        cells, lines = [], []
        for answer in ("yes", "maybe", "no"):
            link = self.url(send_id, answer)
            cells.append(f'<a href="{link}" style="display:inline-block;margin:0 6px 6px 0;padding:8px 14px;'
                         f'border:1px solid #1d4ed8;border-radius:6px;color:#1d4ed8;text-decoration:none;'
                         f'font-weight:600">{LABELS[answer]}</a>')
            lines.append(f"{LABELS[answer]}: {link}")
        calendar = self.url(send_id) + recipient_urls.CALENDAR
        left = "" if d["remaining"] is None else f"{d['remaining']} of {d['capacity']} places left"
        html = (f'<p style="margin:0 0 4px;font-weight:600">{escape(d["title"])}</p>'
                f'<p style="margin:0 0 8px">{escape(d["when"])}<br>{escape(where)}'
                + (f"<br>{escape(left)}" if left else "") + "</p>"
                f'<p style="margin:0 0 6px">Will you come?</p><p style="margin:0">{"".join(cells)}</p>'
                f'<p style="margin:6px 0 0"><a href="{calendar}" style="color:#1d4ed8">Add to my calendar</a></p>')
        text = "\n".join([d["title"], d["when"], where] + ([left] if left else []) + ["Will you come?", *lines,
                                                                                      f"Calendar: {calendar}"])
        return _Block(html, text + "\n")

    def context(self, send_id: int) -> dict[str, Any]:
        return {"event": dict(self.details), "event_url": lambda answer=None: self.url(send_id, answer),
                "event_calendar_url": self.url(send_id) + recipient_urls.CALENDAR,
                "event_block": lambda: self.block(send_id)}


class _Block:
    __slots__ = ("html", "text")

    def __init__(self, html: str, text: str) -> None:
        self.html, self.text = html, text

    def __html__(self) -> str:
        return self.html

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class NoEvent:
    """A campaign whose content shows event links but that no event is attached to: its sends are held."""

    campaign: str


# event_block(), event_url(…), event_calendar_url or event.<field> inside a template tag ({{ … }} or {% … %}).
USES_EVENT = re.compile(r"\{[{%][^}]*?\bevent(?:_block|_url|_calendar_url|\.\w)")


class Events(Contributor):
    """The event a nurture campaign invites to, answerable from the mail with one click."""

    name = "events"
    order = 25

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        # Example values, so a campaign written for an event previews before it is attached (attaching checks that
        # the content carries the answer links: service.attach).
        return SampleContribution(EventLinks(dict(SAMPLE), base_url, tokens).context(0))

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> EventLinks | NoEvent | None:
        event = service.for_campaign(session, campaign.id)
        if event is not None:
            return EventLinks.of(event, base_url=rt.settings.base_url, tokens=rt.tokens)
        content = f"{campaign.subject or ''}\n{campaign.mjml or ''}\n{campaign.text_body or ''}"
        if campaign.kind != CampaignKind.TRANSACTIONAL and USES_EVENT.search(content):
            return NoEvent(campaign.name)
        return None

    def hold(self, session: Session, state: EventLinks | NoEvent,
             recipients: Sequence[tuple[int, int]]) -> Hold | None:
        if not isinstance(state, NoEvent):
            return None
        return Hold([sid for sid, _cid in recipients],
                    "this campaign shows event answer links but no event is attached to it: attach it on the "
                    "event's page (Events) and resume the campaign")

    def variables(self, state: EventLinks | NoEvent, recipient: Recipient) -> dict[str, Any]:
        return state.context(recipient.send_id) if isinstance(state, EventLinks) else {}

    def recall(self, rt: Runtime, session: Session, campaign: Campaign, send_id: int,
               contact_id: int) -> dict[str, Any]:
        links = self.prepare(rt, session, campaign)
        return links.context(send_id) if isinstance(links, EventLinks) else {}


register(Events())
