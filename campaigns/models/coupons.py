"""Coupon pools and codes, assigned one per recipient at send time."""

from __future__ import annotations
