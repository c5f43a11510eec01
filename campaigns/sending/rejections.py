"""Messages the relay refused at send time, handed to whoever records what that means for the contact.

The send path marks the send failed; what a refusal says about the address (a hard bounce suppresses it, soft
bounces count towards a limit) is the feedback capability's business, which sits above sending. It registers a
recorder here when its module is imported (campaigns.feedback.ingest; campaigns.capabilities imports it), so the
send path needs no import of it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy.orm import Session

from campaigns.config import Settings


@dataclass(frozen=True)
class Rejection:
    """One message the relay refused permanently, with its reply."""

    send_id: int
    contact_id: int
    campaign_id: int
    code: int | None
    message: str


Recorder = Callable[[Session, Settings, Rejection], None]
_recorders: dict[str, Recorder] = {}


def on_rejection(name: str, recorder: Recorder) -> None:
    """Register (or, under the same name, replace) a recorder of rejections."""
    _recorders[name] = recorder


def remove(name: str) -> None:
    """Unregister a recorder (tests)."""
    _recorders.pop(name, None)


def record(session: Session, settings: Settings, rejection: Rejection) -> None:
    """Hand a rejection to every recorder, in the send path's transaction (the caller commits)."""
    for recorder in _recorders.values():
        recorder(session, settings, rejection)
