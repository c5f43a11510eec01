"""Policy: per-contact ratio cap and frequency decisions (held sends, reasons)."""

from __future__ import annotations
