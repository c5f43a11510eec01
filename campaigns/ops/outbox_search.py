"""Find captured messages in the Outbox: by recipient, subject or campaign, and test sends apart from the rest."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from campaigns.db import parse_id
from campaigns.models import Campaign
from mailer.capture import OutboxEntry

TEST_PREFIX = "[Test] "     # what services.delivery.send_test puts before a test's subject
KINDS = {"": "All messages", "test": "Test sends", "campaign": "Campaign mail", "other": "Other mail"}


@dataclass(frozen=True)
class OutboxQuery:
    """What the Outbox page was asked for; empty fields match everything."""

    text: str = ""           # part of a recipient address, the To line, the subject or the From line
    kind: str = ""           # one of KINDS
    campaign_id: int | None = None

    @classmethod
    def from_args(cls, args: Mapping[str, str]) -> OutboxQuery:
        """Read q, kind and campaign from query-string arguments, ignoring what does not parse."""
        text = " ".join((args.get("q") or "").split())[:200]
        kind = args.get("kind") or ""
        campaign = (args.get("campaign") or "").strip()
        return cls(text=text, kind=kind if kind in KINDS else "",
                   campaign_id=parse_id(campaign))

    @property
    def active(self) -> bool:
        return bool(self.text or self.kind or self.campaign_id)

    def args(self) -> dict[str, str]:
        """The query-string arguments that reproduce this query (for paging links)."""
        out = {"q": self.text, "kind": self.kind, "campaign": str(self.campaign_id or "")}
        return {k: v for k, v in out.items() if v}


def campaign_of(entry: OutboxEntry) -> int | None:
    """The campaign id a message was sent for (its Feedback-ID starts with it), None for other mail."""
    head = entry.feedback_id.split(":", 1)[0].strip()
    return parse_id(head)


def matcher(query: OutboxQuery, campaign_names: Mapping[int, str]) -> Callable[[OutboxEntry], bool]:
    """A predicate for Outbox.search; the text also matches the name of the message's campaign."""
    needle = query.text.casefold()

    def match(entry: OutboxEntry) -> bool:
        campaign = campaign_of(entry)
        is_test = entry.subject.startswith(TEST_PREFIX)
        if query.kind == "test" and not is_test:
            return False
        if query.kind == "campaign" and (is_test or campaign is None):
            return False
        if query.kind == "other" and (is_test or campaign is not None):
            return False
        if query.campaign_id is not None and campaign != query.campaign_id:
            return False
        if needle:
            haystack = " ".join((*entry.recipients, entry.to, entry.subject, entry.from_,
                                 campaign_names.get(campaign, "") if campaign else "")).casefold()
            return needle in haystack
        return True

    return match


def campaign_names(session: Session) -> dict[int, str]:
    """Every campaign's name by id, newest first (the filter's choices)."""
    return dict(session.execute(select(Campaign.id, Campaign.name).order_by(Campaign.id.desc())).all())
