"""Settings the admin edits at run time, and admin login throttling."""

from __future__ import annotations
