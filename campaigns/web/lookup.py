"""Loading the object a URL names: one get_or_404 for every view, so a missing id is the same 404 page everywhere."""

from __future__ import annotations

from typing import TypeVar

from sqlalchemy.orm import Session

from campaigns.errors import NotFound

T = TypeVar("T")


def get_or_404(session: Session, model: type[T], ident: int) -> T:
    """The row of model with primary key ident; else NotFound, which the app answers with its 404 page (or JSON
    for JSON requests, see campaigns.web.app)."""
    obj = session.get(model, ident)
    if obj is None:
        raise NotFound(f"{model.__name__} {ident} not found")
    return obj
