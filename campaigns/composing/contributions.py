"""Contributions: what a feature (a coupon pool, a survey, the digest…) adds to a campaign's messages, through one
interface, so the send path and the composer never name a feature.

A feature defines a Contributor and registers it when its module is imported (campaigns.capabilities imports every
one; the worker's tasks, the web app and the tests import that). The composer's form, sample check and preview
(campaigns.composing) and the send path (campaigns.sending.delivery, the web version, click targets) call the
registry here: adding a feature is adding a contributor, with no branch in delivery.

The interface lives in composing, below sending, because the composer's sample check and form need it as much as
delivery does.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy.orm import Session

from campaigns.models import Campaign
from mailer.tracking import TokenCodec

if TYPE_CHECKING:
    from campaigns.runtime import Runtime

# (label, body, where to add the missing piece) of each part of a rendered sample: HTML, then plain text.
Parts = Sequence[tuple[str, str, str]]


@dataclass(frozen=True)
class Recipient:
    """Whom a message is rendered for, and the template values it has so far (contact, sender, the links)."""

    send_id: int                      # 0: a test message (tracking links work but record nothing)
    contact_id: int                   # 0: a test to a bare address
    context: Mapping[str, Any]
    web: bool = False                 # the web version of a sent message (/m/<token>), nothing is sent


@dataclass(frozen=True)
class Hold:
    """Sends of a claim that must not go now, and why: they go back to the queue and the campaign pauses."""

    send_ids: list[int]
    reason: str


@dataclass
class SampleContribution:
    """A feature's values for a sample recipient (nothing real used up or recorded), and the check that a
    rendered sample shows what the feature needs shown (each problem names the fix)."""

    variables: dict[str, Any] = field(default_factory=dict)
    check: Callable[[Parts], list[str]] | None = None


class Contributor(Protocol):
    """One feature's part in a message. Subclass it and override the hooks the feature needs; each default adds
    nothing. `order` places it among the others (lower first: a later one sees the earlier ones' values)."""

    name: str
    order: int = 50
    attributes: tuple[str, ...] = ()   # Campaign columns the feature owns, chosen by form fields of the same names

    def choose(self, session: Session, data: Mapping[str, Any], campaign: Campaign | None,
               content: str) -> dict[str, Any]:
        """The feature's attributes as a campaign form chose them (absent: keep); raises ValidationError."""
        return {}

    def sample(self, session: Session | None, choices: Mapping[str, Any], *, base_url: str,
               tokens: TokenCodec) -> SampleContribution | None:
        """Values and check for a sample render of a campaign with these attribute values."""
        return None

    def prepare(self, rt: Runtime, session: Session, campaign: Campaign) -> Any:
        """The feature's state for a batch of the campaign's messages, None when it adds nothing to them."""
        return None

    def hold(self, session: Session, state: Any, recipients: Sequence[tuple[int, int]]) -> Hold | None:
        """Per claim, before anything is rendered: (send id, contact id) of those about to be sent; the sends that
        cannot go now. Works in the claim's transaction (the caller commits)."""
        return None

    def variables(self, state: Any, recipient: Recipient) -> dict[str, Any]:
        """Template values for one recipient; raises mailer.compose.TemplateError when the message must not go."""
        return {}

    def recall(self, rt: Runtime, session: Session, campaign: Campaign, send_id: int,
               contact_id: int) -> dict[str, Any]:
        """The values a sent message was rendered with, found again (a click on a personalised link); raises
        campaigns.errors.NotFound when they are gone."""
        return {}


_registry: dict[str, Contributor] = {}


def register(contributor: Contributor) -> Contributor:
    """Add (or, under the same name, replace) a contributor; returns it."""
    _registry[contributor.name] = contributor
    return contributor


def unregister(name: str) -> None:
    """Remove a contributor (tests that register one of their own)."""
    _registry.pop(name, None)


def contributors() -> list[Contributor]:
    """Every registered contributor, in order (then by name)."""
    return sorted(_registry.values(), key=lambda c: (c.order, c.name))


def attributes_of(campaign: Campaign | None) -> dict[str, Any]:
    """The contributors' attribute values of a campaign (None for an unsaved one)."""
    return {a: getattr(campaign, a, None) if campaign is not None else None
            for c in contributors() for a in c.attributes}


def prepare(rt: Runtime, session: Session, campaign: Campaign) -> list[tuple[Contributor, Any]]:
    """The contributors with something to add to the campaign's messages, each with its state."""
    out = []
    for contributor in contributors():
        state = contributor.prepare(rt, session, campaign)
        if state is not None:
            out.append((contributor, state))
    return out


def variables(prepared: Sequence[tuple[Contributor, Any]], recipient: Recipient) -> dict[str, Any]:
    """The template values every prepared contributor adds for one recipient (each sees the earlier ones')."""
    context = dict(recipient.context)
    added: dict[str, Any] = {}
    for contributor, state in prepared:
        got = contributor.variables(state, Recipient(recipient.send_id, recipient.contact_id, context,
                                                     recipient.web))
        context.update(got)
        added.update(got)
    return added


def recall(rt: Runtime, session: Session, campaign: Campaign, send_id: int, contact_id: int) -> dict[str, Any]:
    """The values every contributor gave a sent message, found again."""
    out: dict[str, Any] = {}
    for contributor in contributors():
        out.update(contributor.recall(rt, session, campaign, send_id, contact_id))
    return out
