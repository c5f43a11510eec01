"""Double opt-in signup forms, pending confirmations and consent records."""

from __future__ import annotations
