"""parse_id: the one reading of an id that arrives as text (forms, query strings, cookies)."""

from __future__ import annotations

import pytest

from campaigns.db import MAX_BIG_ID, MAX_ID, parse_id


@pytest.mark.parametrize(("text", "expected"), [
    ("1", 1), ("0042", 42), (str(MAX_ID), MAX_ID),
    ("", None), (None, None), (" 1", None), ("1 ", None), ("-1", None), ("+1", None), ("1.0", None), ("0x1", None),
    ("²", None), ("١٢", None), ("１", None),          # digits str.isdigit() accepts but int() refuses or reads
    (str(MAX_ID + 1), None), ("9" * 40, None),
])
def test_parse_id(text: str | None, expected: int | None) -> None:
    assert parse_id(text) == expected


def test_big_ids_reach_bigint() -> None:
    assert parse_id(str(MAX_ID + 1), big=True) == MAX_ID + 1
    assert parse_id(str(MAX_BIG_ID), big=True) == MAX_BIG_ID
    assert parse_id(str(MAX_BIG_ID + 1), big=True) is None


@pytest.mark.parametrize("query", ["after=%C2%B2", "before=%C2%B2", "segment=99999999999", "segment=%C2%B2"])
def test_odd_ids_in_the_contact_list_are_ignored(editor, query: str) -> None:
    assert editor.get(f"/admin/contacts?{query}").status_code == 200
