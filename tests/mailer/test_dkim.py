"""mailer.dkim must produce signatures that independent verifiers (dkimpy and OpenDKIM) accept."""

import ast
import base64
import email.header
import hashlib
import os
import quopri
import re
import shutil
import socket
import struct
import subprocess
import textwrap
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import dkim
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key
from dkim.canonicalization import Relaxed
from hypothesis import given, settings
from hypothesis import strategies as st

import mailer.dkim as dkim_module
from mailer.dkim import (
    DEFAULT_SIGNED_HEADERS,
    OVERSIGNED_HEADERS,
    DKIMKey,
    DKIMSigner,
    generate_private_key_pem,
)

DOMAIN = "news.example.com"
# A fixed past instant: both verifiers reject t= in the future, and fixed values keep signatures stable.
TIMESTAMP = 1_700_000_000

Headers = list[tuple[str, str]]


# --------------------------------------------------------------------------- keys and a fake DNS


@pytest.fixture(scope="session")
def rsa_pem() -> bytes:
    return generate_private_key_pem("rsa", 2048)


@pytest.fixture(scope="session")
def rsa_key(rsa_pem: bytes) -> DKIMKey:
    return DKIMKey.from_pem(DOMAIN, "rp2024", rsa_pem)


@pytest.fixture(scope="session")
def ed_key() -> DKIMKey:
    return DKIMKey.from_pem(DOMAIN, "rp2024e", generate_private_key_pem("ed25519"))


@pytest.fixture(scope="session")
def dns_records(rsa_key: DKIMKey, ed_key: DKIMKey) -> dict[str, str]:
    """TXT records by lower-case name, as they would be published."""
    return {key.dns_record_name().lower(): key.dns_txt_value() for key in (rsa_key, ed_key)}


@pytest.fixture(scope="session")
def dkimpy_verify(dns_records: dict[str, str]) -> Callable[[bytes, int], bool]:
    """Verify the idx-th DKIM-Signature of a message with dkimpy against dns_records."""

    def dnsfunc(name: bytes, timeout: int = 5) -> bytes | None:
        txt = dns_records.get(name.decode("ascii").rstrip(".").lower())
        return txt.encode("ascii") if txt is not None else None

    def verify(message: bytes, idx: int = 0) -> bool:
        try:
            return bool(dkim.DKIM(message).verify(idx=idx, dnsfunc=dnsfunc))
        except dkim.NaClNotFoundError:
            # Not a verdict on our signature: dkimpy verifies ed25519 only with PyNaCl installed.
            pytest.fail("dkimpy needs PyNaCl to verify ed25519-sha256: install pynacl (a test dependency)")
        except dkim.DKIMException:
            return False

    return verify


@pytest.fixture(scope="session")
def signer(rsa_key: DKIMKey, ed_key: DKIMKey) -> DKIMSigner:
    return DKIMSigner([rsa_key, ed_key])


# --------------------------------------------------------------------------- the tricky messages


def wire(headers: Headers, body: bytes) -> bytes:
    """Serialize headers and body exactly as the sender will write them."""
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    return head.encode("ascii") + b"\r\n" + body


def base_headers(subject: str = "Hello") -> Headers:
    # Date is not optional here: RFC 5322 requires it and libopendkim refuses messages without it.
    return [
        ("From", f"Rapport News <hello@{DOMAIN}>"),
        ("To", "reader@example.org"),
        ("Subject", subject),
        ("Date", "Tue, 14 Nov 2023 22:13:20 +0000"),
        ("Message-ID", f"<20231114221320.abc123@{DOMAIN}>"),
        ("MIME-Version", "1.0"),
    ]


def qp(text: str) -> bytes:
    """Quoted-printable encode text as a mailer would put it on the wire (CRLF line ends)."""
    return quopri.encodestring(text.encode("utf-8")).replace(b"\n", b"\r\n")


def case_plain() -> tuple[Headers, bytes]:
    headers = base_headers() + [("Content-Type", "text/plain; charset=us-ascii")]
    return headers, b"Hello,\r\n\r\nThis is a plain ASCII newsletter.\r\n\r\n-- \r\nRapport\r\n"


def case_rfc2047() -> tuple[Headers, bytes]:
    subject = email.header.Header("Grüße aus Köln – 20 % für Sie 🎉 ", "utf-8", header_name="Subject")
    sender = email.header.Header("Renée Müller-Lüdenscheidt", "utf-8").encode()
    headers = base_headers(subject.encode(linesep="\r\n"))
    headers[0] = ("From", f"{sender} <renee@{DOMAIN}>")
    headers[1] = ("To", f"{email.header.Header('Zoë Ångström', 'utf-8').encode()} <zoe@example.org>")
    headers.append(("Content-Type", "text/plain; charset=utf-8"))
    headers.append(("Content-Transfer-Encoding", "8bit"))
    return headers, "Liebe Zoë,\r\n\r\nschöne Grüße – Renée\r\n".encode()


def case_long_folded_headers() -> tuple[Headers, bytes]:
    words = " ".join(f"word{i:03d}" for i in range(40))
    subject = "\r\n ".join(textwrap.wrap(f"A very long subject line {words}", 70))
    assert len(subject.replace("\r\n", "")) >= 300 and subject.count("\r\n") >= 3
    token = "t" * 90
    headers = base_headers(subject) + [
        ("Reply-To", f"Rapport Team\r\n\t<team@{DOMAIN}>"),
        ("Cc", "a@example.org,\r\n  b@example.org,\r\n\tc@example.org"),
        (
            "List-Unsubscribe",
            f"<https://{DOMAIN}/unsubscribe/{token}?list=weekly>,\r\n <mailto:unsub-{token}@{DOMAIN}>",
        ),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
        ("Feedback-ID", "campaign-42:list-7:rapport:news"),
        ("Content-Type", 'text/plain;\r\n charset="us-ascii"'),
    ]
    return headers, b"Long headers, short body.\r\n"


def case_whitespace_body() -> tuple[Headers, bytes]:
    lines = [
        b"trailing spaces   ",
        b"trailing tab\t",
        b"  leading and   inner \t runs\t\tof whitespace",
        b"\t",
        b"x" * 990,
        (b"word " * 198)[:990],
        b"  " + b"y" * 987 + b" ",
        b"",
        b"last text line",
        b"   ",
        b"",
        b"\t \t",
        b"",
    ]
    headers = base_headers("Whitespace") + [("Content-Type", "text/plain; charset=us-ascii")]
    return headers, b"\r\n".join(lines) + b"\r\n\r\n"


def case_empty_body() -> tuple[Headers, bytes]:
    return base_headers("Nothing inside"), b""


def multipart_body(boundary: str, repeat: int = 6) -> bytes:
    """A multipart/alternative body with quoted-printable text and HTML parts (~45 KB at repeat=100)."""
    para = (
        "Grüße! Thïs paragraph has accents, a tab\tand  double spaces, plus a URL "
        "https://news.example.com/track?u=12345&c=678 that needs = escaping. "
    )
    text = "\n".join(para * 2 for _ in range(repeat))
    html = "<html><body>\n" + "\n".join(
        f'  <p style="margin:0 0 12px 0;">{para}</p>\n    <a href="https://x.example/{i}">link {i}</a>  '
        for i in range(repeat)
    )
    html += "\n</body></html>\n"
    parts = [
        f"--{boundary}\r\n".encode(),
        b'Content-Type: text/plain; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n',
        qp(text),
        f"\r\n--{boundary}\r\n".encode(),
        b'Content-Type: text/html; charset="utf-8"\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n',
        qp(html),
        f"\r\n--{boundary}--\r\n".encode(),
    ]
    return b"".join(parts)


def case_multipart_qp() -> tuple[Headers, bytes]:
    boundary = "==rapport-7c1f0b=="
    headers = base_headers("Multipart") + [
        ("Content-Type", f'multipart/alternative;\r\n boundary="{boundary}"'),
        ("List-Unsubscribe", f"<https://{DOMAIN}/u/abc>, <mailto:u@{DOMAIN}>"),
        ("List-Unsubscribe-Post", "List-Unsubscribe=One-Click"),
    ]
    return headers, multipart_body(boundary)


CASES: dict[str, Callable[[], tuple[Headers, bytes]]] = {
    "plain": case_plain,
    "rfc2047": case_rfc2047,
    "long-folded-headers": case_long_folded_headers,
    "whitespace-body": case_whitespace_body,
    "empty-body": case_empty_body,
    "multipart-qp": case_multipart_qp,
}


@pytest.fixture(params=list(CASES))
def case(request: pytest.FixtureRequest) -> tuple[Headers, bytes]:
    return CASES[request.param]()


def tag(signature_header: bytes, name: str) -> str:
    """Return one tag's value from a DKIM-Signature header, with folding whitespace removed."""
    value = signature_header.split(b":", 1)[1].decode("ascii")
    for part in value.split(";"):
        key, _, val = part.partition("=")
        if key.strip() == name:
            return re.sub(r"\s+", "", val)
    raise KeyError(name)


def split_signatures(block: bytes) -> list[bytes]:
    """Split sign()'s output into one header per signature."""
    return [b"DKIM-Signature:" + part for part in block.split(b"DKIM-Signature:")[1:]]


# --------------------------------------------------------------------------- dkimpy interop


def test_both_signatures_verify_with_dkimpy(signer, case, dkimpy_verify) -> None:
    headers, body = case
    message = signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body)
    assert dkimpy_verify(message, 0), "rsa-sha256 signature rejected by dkimpy"
    assert dkimpy_verify(message, 1), "ed25519-sha256 signature rejected by dkimpy"


def test_sign_message_matches_sign(signer, case) -> None:
    headers, body = case
    raw = wire(headers, body)
    # RSA PKCS#1 v1.5 and Ed25519 are deterministic, so both entry points must agree byte for byte.
    expected = signer.sign(headers, body, timestamp=TIMESTAMP) + raw
    assert signer.sign_message(raw, timestamp=TIMESTAMP) == expected


def test_signature_header_shape(signer, case, rsa_key, ed_key) -> None:
    headers, body = case
    block = signer.sign(headers, body, timestamp=TIMESTAMP)
    assert block.endswith(b"\r\n")
    sigs = split_signatures(block)
    assert [tag(s, "a") for s in sigs] == ["rsa-sha256", "ed25519-sha256"]
    assert [tag(s, "s") for s in sigs] == [rsa_key.selector, ed_key.selector]
    for sig in sigs:
        assert tag(sig, "c") == "relaxed/relaxed"
        assert tag(sig, "d") == DOMAIN
        assert tag(sig, "t") == str(TIMESTAMP)
        lines = sig[:-2].split(b"\r\n")
        assert all(len(line) <= 78 for line in lines), [len(line) for line in lines]
        assert all(line[:1] in (b" ", b"\t") for line in lines[1:])


def test_h_tag_oversigns_what_readers_see_and_lists_present_headers(signer) -> None:
    headers, body = case_long_folded_headers()
    block = signer.sign(headers, body, timestamp=TIMESTAMP)
    present = {name.lower() for name, _ in headers}
    for sig in split_signatures(block):
        h = tag(sig, "h").split(":")
        for name in OVERSIGNED_HEADERS:
            # One entry per instance, plus the empty one that makes an added instance break the signature.
            assert h.count(name) == (name in present) + 1, name
        assert "list-unsubscribe" in h and "list-unsubscribe-post" in h
        assert set(h) == (present & set(DEFAULT_SIGNED_HEADERS)) | set(OVERSIGNED_HEADERS)
        # This h= is too long for one line, so the verifier tests also cover FWS inside the h= list.
        assert re.search(rb"h=[a-z:-]+:\r\n [a-z]", sig)
    plain_h = tag(signer.sign(*case_plain(), timestamp=TIMESTAMP), "h").split(":")
    assert "feedback-id" not in plain_h  # absent headers that are not oversigned are not listed
    assert plain_h.count("cc") == 1 and plain_h.count("list-id") == 1  # absent but oversigned: once, empty


def test_list_id_is_signed(signer, dkimpy_verify) -> None:
    headers, body = case_multipart_qp()
    headers.append(("List-Id", f"Weekly news <weekly.{DOMAIN}>"))
    message = signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body)
    assert tag(message, "h").split(":").count("list-id") == 2
    assert dkimpy_verify(message, 0) and dkimpy_verify(message, 1)
    assert not dkimpy_verify(message.replace(b"<weekly.", b"<other."), 0)


def _retitle(message: bytes) -> bytes:
    return message.replace(b"Subject: Multipart", b"Subject: Multipart!")


def _second_from(message: bytes) -> bytes:
    # Prepended From would be what a verifier hashes first; oversigning makes that a failure.
    return message.replace(b"From: ", b"From: attacker@evil.example\r\nFrom: ", 1)


def _alter_body(message: bytes) -> bytes:
    return message.replace(b"that needs", b"that needz", 1)


def _move_unsubscribe(message: bytes) -> bytes:
    return message.replace(f"<https://{DOMAIN}/u/abc>".encode(), b"<https://evil.example/u>")


def _add_reply_to(message: bytes) -> bytes:
    # The message had no Reply-To: one added in transit would send the reader's answers elsewhere.
    return message.replace(b"\r\n\r\n", b"\r\nReply-To: attacker@evil.example\r\n\r\n", 1)


def _second_subject(message: bytes) -> bytes:
    return message.replace(b"Subject: ", b"Subject: Your account is locked\r\nSubject: ", 1)


def _add_header(name: bytes) -> Callable[[bytes], bytes]:
    def add(message: bytes) -> bytes:
        return message.replace(b"\r\n\r\n", b"\r\n" + name + b": x@evil.example\r\n\r\n", 1)

    add.__name__ = f"_add_{name.decode().lower()}"
    return add


@pytest.mark.parametrize("tamper", [
    _retitle, _second_from, _alter_body, _move_unsubscribe, _add_reply_to, _second_subject,
    _add_header(b"Cc"), _add_header(b"To"), _add_header(b"List-Id"), _add_header(b"Message-ID"),
    _add_header(b"Date"), _add_header(b"List-Unsubscribe-Post"),
])
def test_tampering_breaks_verification(signer, dkimpy_verify, tamper) -> None:
    headers, body = case_multipart_qp()
    message = signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body)
    assert dkimpy_verify(message, 0) and dkimpy_verify(message, 1)
    tampered = tamper(message)
    assert tampered != message
    assert not dkimpy_verify(tampered, 0)
    assert not dkimpy_verify(tampered, 1)


def _relay_rewrap(message: bytes) -> bytes:
    """What relaxed canonicalization is for: relays that refold headers and pad whitespace."""
    head, body = message.split(b"\r\n\r\n", 1)
    head = head.replace(b"Subject: Multipart", b"Subject:   \t Multipart  ")
    head = head.replace(b"multipart/alternative;\r\n boundary", b"multipart/alternative;  boundary")
    body = body.replace(b"\r\n", b"  \r\n") + b"\r\n\r\n"
    return head + b"\r\n\r\n" + body


def test_relaxed_tolerates_rewrapping(signer, dkimpy_verify) -> None:
    headers, body = case_multipart_qp()
    message = _relay_rewrap(signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body))
    assert dkimpy_verify(message, 0) and dkimpy_verify(message, 1)


def test_repeated_headers_are_signed_bottom_up(rsa_key, ed_key, dkimpy_verify) -> None:
    signer = DKIMSigner([rsa_key, ed_key], signed_headers=("from", "date", "subject", "x-campaign"))
    headers = base_headers() + [("X-Campaign", "first"), ("X-Campaign", "second")]
    block = signer.sign(headers, b"body\r\n", timestamp=TIMESTAMP)
    assert tag(block, "h").split(":").count("x-campaign") == 2
    message = block + wire(headers, b"body\r\n")
    assert dkimpy_verify(message, 0) and dkimpy_verify(message, 1)
    swapped = message.replace(b"first", b"@@").replace(b"second", b"first").replace(b"@@", b"second")
    assert not dkimpy_verify(swapped, 0)


# --------------------------------------------------------------------------- body hash cross-checks


def dkimpy_body_hash(body: bytes) -> str:
    return base64.b64encode(hashlib.sha256(Relaxed.canonicalize_body(body)).digest()).decode("ascii")


def test_body_hash_matches_dkimpy_signature(rsa_key, rsa_pem, signer, case) -> None:
    headers, body = case
    theirs = dkim.sign(
        wire(headers, body),
        rsa_key.selector.encode(),
        DOMAIN.encode(),
        rsa_pem,
        canonicalize=(b"relaxed", b"relaxed"),
        include_headers=[b"from", b"subject"],
    )
    ours = signer.sign(headers, body, timestamp=TIMESTAMP)
    assert tag(ours, "bh") == tag(theirs, "bh") == dkimpy_body_hash(body)


_LINE = st.text(alphabet=" \tab=\xe9", max_size=12).map(lambda s: s.encode("utf-8"))


@settings(max_examples=300, deadline=None)
@given(lines=st.lists(_LINE, max_size=8))
def test_body_hash_matches_dkimpy_canonicalization(lines: list[bytes]) -> None:
    # dkimpy canonicalizes line-terminated bodies per RFC 6376 3.4.4, so it serves as the oracle.
    body = b"".join(line + b"\r\n" for line in lines)
    assert dkim_module._relaxed_body_hash(body).decode("ascii") == dkimpy_body_hash(body)


@pytest.mark.parametrize("unterminated", [b"abc", b"abc \t ", b"abc\r\n\r\n  ", b"  \t"])
def test_unterminated_body_hashes_as_smtp_will_deliver_it(unterminated: bytes) -> None:
    # SMTP always ends the data with CRLF, so the receiver sees (and hashes) the terminated form.
    assert dkim_module._relaxed_body_hash(unterminated) == dkim_module._relaxed_body_hash(
        unterminated + b"\r\n"
    )


def test_empty_and_blank_bodies_hash_as_empty() -> None:
    empty = base64.b64encode(hashlib.sha256(b"").digest())
    for body in (b"", b"\r\n", b"\r\n\r\n", b" \r\n\t\r\n"):
        assert dkim_module._relaxed_body_hash(body) == empty


# --------------------------------------------------------------------------- OpenDKIM interop


def _which(program: str) -> str | None:
    # opendkim-testmsg lives in /usr/sbin, which a non-login PATH may lack.
    return shutil.which(program, path=os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin", "/sbin"]))


@pytest.fixture(scope="session")
def opendkim_testmsg() -> str:
    """Path to opendkim-testmsg, installing Debian's opendkim-tools when missing and we are root."""
    path = _which("opendkim-testmsg")
    if path is not None:
        return path
    if os.geteuid() != 0:
        pytest.skip("opendkim-testmsg is not installed and only root can apt-get install opendkim-tools")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "opendkim-tools"]
    log = ""
    try:
        for step in (install, ["apt-get", "update", "-q"], install):
            proc = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
            log = proc.stdout[-2000:] + proc.stderr[-2000:]
            if step is install and proc.returncode == 0:
                break
    except (OSError, subprocess.TimeoutExpired) as exc:
        pytest.skip(f"could not install opendkim-tools: {exc}")
    path = _which("opendkim-testmsg")
    if path is None:
        pytest.skip(f"could not install opendkim-tools:\n{log}")
    return path


def _serve_dns(sock: socket.socket, records: dict[str, str], stop: threading.Event) -> None:
    """Answer TXT queries from records (authoritative, NXDOMAIN for anything else)."""
    while not stop.is_set():
        try:
            query, client = sock.recvfrom(4096)
        except TimeoutError:
            continue
        except OSError:
            return
        try:
            qid, flags = struct.unpack("!HH", query[:4])
            pos, labels = 12, []
            while query[pos]:
                labels.append(query[pos + 1 : pos + 1 + query[pos]].decode("ascii"))
                pos += 1 + query[pos]
            qtype = struct.unpack("!H", query[pos + 1 : pos + 3])[0]
            question = query[12 : pos + 5]
        except (IndexError, struct.error, UnicodeDecodeError):
            continue
        txt = records.get(".".join(labels).lower())
        answer = b""
        if txt is not None and qtype == 16:
            data = txt.encode("ascii")
            # A TXT record is a list of <=255-byte strings; verifiers concatenate them.
            chunks = [data[i : i + 255] for i in range(0, len(data), 255)]
            rdata = b"".join(bytes([len(chunk)]) + chunk for chunk in chunks)
            answer = struct.pack("!HHHIH", 0xC00C, 16, 1, 60, len(rdata)) + rdata
        rcode = 0 if txt is not None else 3
        header = struct.pack("!HHHHHH", qid, 0x8400 | (flags & 0x0100) | rcode, 1, 1 if answer else 0, 0, 0)
        sock.sendto(header + question + answer, client)


@pytest.fixture(scope="session")
def opendkim_verify(
    opendkim_testmsg: str, dns_records: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Callable[[bytes], subprocess.CompletedProcess[bytes]]]:
    """Run opendkim-testmsg in verify mode with our keys served by a throw-away DNS server.

    opendkim-testmsg has no option for a key file or config in verify mode: libopendkim always asks the
    system resolver. So the check runs in a private mount namespace whose /etc/resolv.conf points at a
    tiny DNS server on a spare loopback address; the host's resolver is never touched.
    """
    unshare = _which("unshare")
    if unshare is None or os.geteuid() != 0:
        pytest.skip("needs root and unshare(1) to give opendkim-testmsg a private resolv.conf")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    for last_octet in range(1, 20):
        try:
            sock.bind((f"127.53.0.{last_octet}", 53))
            break
        except OSError:
            continue
    else:
        sock.close()
        pytest.skip("no free loopback address to run a DNS server on port 53")
    sock.settimeout(0.2)
    stop = threading.Event()
    thread = threading.Thread(target=_serve_dns, args=(sock, dns_records, stop), daemon=True)
    thread.start()
    resolv = tmp_path_factory.mktemp("opendkim") / "resolv.conf"
    resolv.write_text(f"nameserver {sock.getsockname()[0]}\noptions attempts:2 timeout:2\n")
    script = 'mount --bind "$1" /etc/resolv.conf && exec "$2"'

    def run(message: bytes) -> subprocess.CompletedProcess[bytes]:
        cmd = [unshare, "--mount", "--", "sh", "-c", script, "sh", str(resolv), opendkim_testmsg]
        return subprocess.run(cmd, input=message, capture_output=True, timeout=60)

    probe = subprocess.run([unshare, "--mount", "--", "true"], capture_output=True)
    if probe.returncode != 0:
        stop.set()
        sock.close()
        pytest.skip(f"unshare --mount is not permitted here: {probe.stderr.decode(errors='replace')}")
    yield run
    stop.set()
    thread.join(timeout=5)
    sock.close()


@pytest.fixture(params=["rsa", "ed25519"])
def single_key_signer(request: pytest.FixtureRequest, rsa_key: DKIMKey, ed_key: DKIMKey) -> DKIMSigner:
    return DKIMSigner([rsa_key if request.param == "rsa" else ed_key])


def test_opendkim_verifies(single_key_signer, case, opendkim_verify) -> None:
    headers, body = case
    message = single_key_signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body)
    result = opendkim_verify(message)
    assert result.returncode == 0, result.stderr.decode(errors="replace")


@pytest.mark.parametrize(
    ("tamper", "complaint"),
    [
        (_retitle, b"bad signature"),
        (_alter_body, b"bad signature"),
        # libopendkim refuses a second From as malformed before it even looks at the signature.
        (_second_from, b"syntax error"),
        (_add_reply_to, b"bad signature"),
    ],
)
def test_opendkim_rejects_tampering(single_key_signer, opendkim_verify, tamper, complaint) -> None:
    headers, body = case_multipart_qp()
    message = single_key_signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body)
    assert opendkim_verify(message).returncode == 0
    result = opendkim_verify(tamper(message))
    assert result.returncode != 0
    assert complaint in result.stderr.lower()


def test_opendkim_accepts_relay_rewrapping_and_repeated_headers(rsa_key, opendkim_verify) -> None:
    signer = DKIMSigner([rsa_key], signed_headers=(*DEFAULT_SIGNED_HEADERS, "x-campaign"))
    headers, body = case_multipart_qp()
    headers += [("X-Campaign", "first"), ("X-Campaign", "second")]
    message = _relay_rewrap(signer.sign(headers, body, timestamp=TIMESTAMP) + wire(headers, body))
    result = opendkim_verify(message)
    assert result.returncode == 0, result.stderr.decode(errors="replace")
    swapped = message.replace(b"X-Campaign: first", b"X-Campaign: 1st")
    assert opendkim_verify(swapped).returncode != 0


# --------------------------------------------------------------------------- keys, API and validation


def test_dns_records(rsa_key, ed_key) -> None:
    assert rsa_key.dns_record_name() == f"rp2024._domainkey.{DOMAIN}"
    rsa_txt = rsa_key.dns_txt_value()
    assert rsa_txt.startswith("v=DKIM1; k=rsa; p=MIIB")
    public = load_der_public_key(base64.b64decode(rsa_txt.split("p=", 1)[1]))
    assert public.public_numbers() == rsa_key.private_key.public_key().public_numbers()
    ed_txt = ed_key.dns_txt_value()
    assert ed_txt.startswith("v=DKIM1; k=ed25519; p=")
    assert len(base64.b64decode(ed_txt.split("p=", 1)[1])) == 32


def test_generate_private_key_pem() -> None:
    assert generate_private_key_pem("ed25519").startswith(b"-----BEGIN PRIVATE KEY-----")
    with pytest.raises(ValueError):
        generate_private_key_pem("dsa")
    with pytest.raises(ValueError):
        generate_private_key_pem("rsa", bits=512)


def test_key_validation(rsa_key) -> None:
    with pytest.raises(ValueError):
        DKIMKey(selector="bad selector", domain=DOMAIN, private_key=rsa_key.private_key)
    with pytest.raises(ValueError):
        DKIMKey(selector="s1", domain="example.com; x=1", private_key=rsa_key.private_key)
    with pytest.raises(TypeError):
        DKIMKey(selector="s1", domain=DOMAIN, private_key=ec.generate_private_key(ec.SECP256R1()))


def test_signer_validation(rsa_key) -> None:
    with pytest.raises(ValueError):
        DKIMSigner([])
    with pytest.raises(ValueError):
        DKIMSigner([rsa_key], signed_headers=("to", "subject"))
    with pytest.raises(ValueError):
        DKIMSigner([rsa_key], signed_headers=("from", "dkim-signature"))
    assert "from" in OVERSIGNED_HEADERS


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        (base_headers(), b"bare LF\nin body\r\n"),
        (base_headers(), b"bare CR\rin body\r\n"),
        (base_headers()[1:], b"no From\r\n"),
        (base_headers("line\r\nbreak without fold"), b"x\r\n"),
        (base_headers("bare\nLF"), b"x\r\n"),
    ],
)
def test_sign_rejects_what_would_not_survive_transport(rsa_key, headers, body) -> None:
    with pytest.raises(ValueError):
        DKIMSigner([rsa_key]).sign(headers, body, timestamp=TIMESTAMP)


def test_an_internationalized_address_is_signed_over_its_utf8_bytes(signer, dkimpy_verify) -> None:
    """RFC 8616 4: a UTF-8 header (an RFC 6532 address, sent with SMTPUTF8) is hashed as its UTF-8 bytes; it used
    to be refused, and the message to such an address could not be sent."""
    headers = base_headers()
    headers[1] = ("To", "=?utf-8?b?Wm/Dqw==?= <zoë@example.org>")
    body = b"Hallo\r\n"
    message = signer.sign(headers, body, timestamp=TIMESTAMP) + \
        "".join(f"{name}: {value}\r\n" for name, value in headers).encode("utf-8") + b"\r\n" + body
    assert dkimpy_verify(message, 0) and dkimpy_verify(message, 1)
    tampered = message.replace("zoë".encode(), b"zoe")
    assert not dkimpy_verify(tampered, 0)


def test_timestamp_defaults_to_now(rsa_key, monkeypatch) -> None:
    monkeypatch.setattr(dkim_module.time, "time", lambda: 1_699_999_999.9)
    block = DKIMSigner([rsa_key]).sign(*case_plain())
    assert tag(block, "t") == "1699999999"


def test_mailer_dkim_stays_a_leaf_module() -> None:
    tree = ast.parse(Path(dkim_module.__file__).read_text())
    imported = {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    imported |= {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    banned = ("flask", "sqlalchemy", "campaigns")
    assert not [name for name in imported if name.split(".")[0] in banned]
