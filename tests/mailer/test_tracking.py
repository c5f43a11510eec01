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


_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"


def _flip_unused_bits(token: str) -> str:
    """The same bytes spelled differently: the last character's bits past the data set to other values."""
    unused = {2: 4, 3: 2}.get(len(token) % 4, 0)
    if not unused:
        return token
    value = _ALPHABET.index(token[-1])
    return token[:-1] + _ALPHABET[value ^ ((1 << unused) - 1)]


_MUTATIONS = [
    lambda t, i: t + "=", lambda t, i: t + "==", lambda t, i: t + ".", lambda t, i: t + "~",
    lambda t, i: t + "%00", lambda t, i: t + "\x00", lambda t, i: t + "%0a", lambda t, i: t + "\n",
    lambda t, i: t[:i] + "=" + t[i:], lambda t, i: t[:i] + " " + t[i:], lambda t, i: t[:i] + "\t" + t[i:],
    lambda t, i: t[:i] + "." + t[i:], lambda t, i: t[:i] + "!" + t[i:], lambda t, i: t[:i] + "é" + t[i:],
    lambda t, i: t.replace("-", "+"), lambda t, i: t.replace("_", "/"),
    lambda t, i: t.replace("-", "+").replace("_", "/"), lambda t, i: _flip_unused_bits(t),
    lambda t, i: t[:i] + t[i].swapcase() + t[i + 1:], lambda t, i: t[:i] + t[i + 1:],
]


@given(st.sampled_from(list(Purpose)), st.lists(st.integers(0, 2**40), min_size=3, max_size=3),
       st.integers(0, len(_MUTATIONS) - 1), st.integers(0, 200))
def test_only_the_exact_spelling_of_a_token_opens(purpose: Purpose, ids: list[int], which: int, where: int) -> None:
    from mailer.tracking import ARITY

    ids = ids[:ARITY[purpose]]
    token = codec.seal(purpose, *ids)
    assert codec.open(purpose, token) == tuple(ids)
    mutated = _MUTATIONS[which](token, where % len(token))
    if mutated == token:
        return               # this mutation does not apply to this token (no - or _, no unused bits, ...)
    with pytest.raises(InvalidToken):
        codec.open(purpose, mutated)


def test_unused_trailing_bits_are_a_different_token() -> None:
    tokens = [codec.seal(Purpose.OPEN, n) for n in range(200)]
    flippable = [t for t in tokens if _flip_unused_bits(t) != t]
    assert flippable                       # some token lengths leave unused bits: the test has something to do
    for token in flippable:
        with pytest.raises(InvalidToken):
            codec.open(Purpose.OPEN, _flip_unused_bits(token))


def test_tokens_already_in_mailboxes_keep_opening_and_sealing_is_stable() -> None:
    """Tokens are deterministic (AES-SIV): the same key and ids give the same spelling. These were sealed by an
    earlier release; links in mail already sent must keep working, and sealing must still spell them alike."""
    pinned = TokenCodec("pinned-secret")
    for purpose, ids, token in [(Purpose.OPEN, (1,), "OQkCUjcVU8fz6NF9gS573kNP"),
                                (Purpose.CLICK, (123456789, 7), "OSM5FBlSWSuv3F6-kKkQqx2NShitXA"),
                                (Purpose.UNSUBSCRIBE, (0, 2**40), "OZDv6WqwOvQW9PhYEZmw2aMtufFG0wW5")]:
        assert pinned.seal(purpose, *ids) == token
        assert pinned.open(purpose, token) == ids
    # The same ids again (their encodings are reused within a message) spell the same token; a negative id is no id.
    assert pinned.seal(Purpose.CLICK, 123456789, 7) == "OSM5FBlSWSuv3F6-kKkQqx2NShitXA"
    with pytest.raises(ValueError):
        pinned.seal(Purpose.CLICK, 123456789, -1)
