"""Short surveys (1-5 questions) and their answers."""

from __future__ import annotations
