"""Recipient tokens: unforgeable, purpose-bound, rotatable, opaque."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mailer.tracking import InvalidToken, Purpose, TokenCodec, distinct_links, rewrite_links

codec = TokenCodec("current-secret", ["retired-secret"])


@given(st.integers(0, 2**62), st.integers(0, 2**62))
def test_round_trip(send_id: int, link_id: int) -> None:
    token = codec.seal(Purpose.CLICK, send_id, link_id)
    assert codec.open(Purpose.CLICK, token) == (send_id, link_id)


def test_token_does_not_show_the_ids() -> None:
    token = codec.seal(Purpose.OPEN, 123456)
    assert "123456" not in token and token != codec.seal(Purpose.OPEN, 123457)


def test_cross_purpose_replay_is_rejected() -> None:
    token = codec.seal(Purpose.OPEN, 5)
    with pytest.raises(InvalidToken):
        codec.open(Purpose.MESSAGE, token)
    with pytest.raises(InvalidToken):
        codec.open(Purpose.PREFERENCES, token)


def test_altered_and_truncated_tokens_are_rejected() -> None:
    token = codec.seal(Purpose.UNSUBSCRIBE, 42, 7)
    flipped = token[:10] + ("A" if token[10] != "A" else "B") + token[11:]
    for bad in (flipped, token[:-1], token[:20], token + "A", "", "x" * 500, "!!!!" * 8):
        with pytest.raises(InvalidToken):
            codec.open(Purpose.UNSUBSCRIBE, bad)


def test_other_key_cannot_forge_but_retired_key_still_opens() -> None:
    with pytest.raises(InvalidToken):
        codec.open(Purpose.OPEN, TokenCodec("attacker").seal(Purpose.OPEN, 1))
    old = TokenCodec("retired-secret").seal(Purpose.OPEN, 9)
    assert codec.open(Purpose.OPEN, old) == (9,)


@given(st.text(max_size=200))
def test_garbage_never_crashes(raw: str) -> None:
    with pytest.raises(InvalidToken):
        codec.open(Purpose.CLICK, raw)


def test_links_are_decoded_deduplicated_and_rewritten() -> None:
    html = ('<a href="https://x.test/a?b=1&amp;c=2">1</a><a href=\'https://x.test/a?b=1&amp;c=2\'>2</a>'
            '<a href="mailto:x@y">m</a><a href="{{ unsubscribe_url }}">u</a><area href="https://x.test/z">')
    assert distinct_links(html) == ["https://x.test/a?b=1&c=2", "https://x.test/z"]
    out = rewrite_links(html, lambda url: "T" if url.startswith("https") else None)
    assert out.count('"T"') == 2 and out.count("'T'") == 1 and "mailto:x@y" in out
