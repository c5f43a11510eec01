"""Time DKIM signing of a ~45 KB multipart newsletter: dkimpy's dkim.sign against mailer.dkim.

Run: .venv/bin/python bench/dkim_sign.py [N]
Prints a small table and, last, one JSON line {"dkimpy_ms": ..., "rapport_ms": ..., "speedup": ...}.
"""

import json
import logging
import quopri
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dkim

# Let the script run from a plain checkout too, not only from an editable install.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from mailer.dkim import DEFAULT_SIGNED_HEADERS, DKIMKey, DKIMSigner, generate_private_key_pem

logger = logging.getLogger(__name__)

DOMAIN = "news.example.com"
TIMESTAMP = 1_700_000_000
BOUNDARY = "==rapport-bench-boundary=="
SIGNED = [h for h in DEFAULT_SIGNED_HEADERS if h not in ("reply-to", "cc")]   # what dkimpy is asked to sign too


def qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends, as the message would be sent."""
    return quopri.encodestring(text.encode("utf-8")).replace(b"\n", b"\r\n")


def build_message(target: int = 45_000) -> tuple[list[tuple[str, str]], bytes]:
    """A realistic newsletter: folded headers and a multipart/alternative QP body of about target bytes."""
    para = (
        "Grüße aus Köln! This week: three stories, one offer, and a   table\tor two. "
        "Read more at https://news.example.com/p/2024/11/this-week?utm_source=newsletter&id=42 "
    )
    html_row = (
        '  <tr><td style="padding:8px 16px;font-family:Arial,sans-serif;">{}</td>\n'
        '      <td><a href="https://news.example.com/t/{}">Lesen &raquo;</a></td></tr>\n'
    )
    text_parts, html_parts, i = [], [], 0
    while True:
        text_parts.append(para)
        html_parts.append(html_row.format(para, i))
        i += 1
        body = b"".join(
            [
                f"--{BOUNDARY}\r\nContent-Type: text/plain; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(),
                qp("\n".join(text_parts)),
                f"\r\n--{BOUNDARY}\r\nContent-Type: text/html; charset=utf-8\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(),
                qp("<html><body><table>\n" + "".join(html_parts) + "</table></body></html>\n"),
                f"\r\n--{BOUNDARY}--\r\n".encode(),
            ]
        )
        if len(body) >= target:
            break
    headers = [
        ("From", f"=?utf-8?q?Rapport_K=C3=B6ln?= <hello@{DOMAIN}>"),
        ("To", "reader@example.org"),
        (
            "Subject",
            "=?utf-8?q?Gr=C3=BC=C3=9Fe_aus_K=C3=B6ln_=E2=80=93_this_week_in_three?=\r\n =?utf-8?q?_stories?=",
        ),
        ("Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ("Message-ID", f"<20231114221320.4f2a9c@{DOMAIN}>"),
        ("MIME-Version", "1.0"),
        ("Content-Type", f'multipart/alternative;\r\n boundary="{BOUNDARY}"'),
        ("List-Unsubscribe", f"<https://{DOMAIN}/u/4f2a9c0b7d1e?l=weekly>,\r\n <mailto:u-4f2a9c@{DOMAIN}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", "c42:l7:rapport:news"),
    ]
    return headers, body


def per_message_ms(fn: Callable[[], object], n: int) -> float:
    """Mean wall time of fn in milliseconds over n calls, after a short warm-up."""
    for _ in range(min(20, n)):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) * 1000 / n


def main() -> None:
    """Build the message, check both signers verify, then time them."""
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 500
    pem = generate_private_key_pem("rsa", 2048)
    rsa_key = DKIMKey.from_pem(DOMAIN, "bench", pem)
    ed_key = DKIMKey.from_pem(DOMAIN, "benche", generate_private_key_pem("ed25519"))
    headers, body = build_message()
    head = "".join(f"{name}: {value}\r\n" for name, value in headers).encode("ascii")
    message = head + b"\r\n" + body
    signer = DKIMSigner([rsa_key])
    dual = DKIMSigner([rsa_key, ed_key])
    include = [name.encode() for name in SIGNED]

    # A benchmark of a signer that produces bad signatures would be meaningless: verify first.
    txt = {f"{k.dns_record_name()}.": k.dns_txt_value().encode() for k in (rsa_key, ed_key)}
    signed = signer.sign(headers, body, timestamp=TIMESTAMP) + message
    if not dkim.verify(signed, dnsfunc=lambda name, timeout=5: txt.get(name.decode())):
        raise SystemExit("rapport signature does not verify with dkimpy")

    def dkimpy_sign() -> bytes:
        return dkim.sign(
            message,
            b"bench",
            DOMAIN.encode(),
            pem,
            canonicalize=(b"relaxed", b"relaxed"),
            include_headers=include,
        )

    rows = [
        ("dkimpy dkim.sign (rsa-sha256)", per_message_ms(dkimpy_sign, n)),
        ("rapport sign() rsa-sha256", per_message_ms(lambda: signer.sign(headers, body), n)),
        ("rapport sign_message() rsa-sha256", per_message_ms(lambda: signer.sign_message(message), n)),
        ("rapport sign() rsa + ed25519", per_message_ms(lambda: dual.sign(headers, body), n)),
    ]
    print(f"message: {len(message)} bytes ({len(body)} body), N={n}")
    print(f"{'signer':<36} {'ms/msg':>8} {'msgs/s':>9}")
    for label, ms in rows:
        print(f"{label:<36} {ms:>8.3f} {1000 / ms:>9.0f}")
    dkimpy_ms, rapport_ms = rows[0][1], rows[1][1]
    print(
        json.dumps(
            {
                "dkimpy_ms": round(dkimpy_ms, 4),
                "rapport_ms": round(rapport_ms, 4),
                "speedup": round(dkimpy_ms / rapport_ms, 1),
            }
        )
    )


if __name__ == "__main__":
    main()
