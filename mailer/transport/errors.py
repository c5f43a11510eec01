"""Failure classification: a 5xx reply is a :class:`PermanentFailure`; 4xx replies, connection failures, timeouts and
TLS errors are :class:`TemporaryFailure`. Each error records the SMTP ``stage`` it happened at, because a 5xx during
connect/helo/starttls/auth/mail is a problem with the relay or sender and not a reason to bounce a recipient.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class DeliveryError(Exception):
    """A message could not be handed to the relay; carries the SMTP reply when there was one."""

    permanent: bool = False

    def __init__(
        self,
        smtp_message: str,
        smtp_code: int | None = None,
        *,
        stage: str = "",
        refused: Mapping[str, tuple[int, str]] | None = None,
        maybe_delivered: bool = False,
    ) -> None:
        super().__init__(smtp_message)
        self.smtp_code = smtp_code
        self.smtp_message = smtp_message
        # Step that failed: ratelimit, connect, helo, starttls, auth, mail, rcpt, data, message (end of DATA).
        self.stage = stage
        self.refused: dict[str, tuple[int, str]] = dict(refused or {})
        # The whole message was written but no reply came: the relay may have accepted it. Never resend.
        self.maybe_delivered = maybe_delivered

    @property
    def relay_problem(self) -> bool:
        """The relay refused the session or the sender, not this recipient (wrong password, TLS required…)."""
        return self.stage in ("connect", "helo", "starttls", "auth", "mail")

    def __str__(self) -> str:
        code = "" if self.smtp_code is None else f"{self.smtp_code} "
        where = f" [{self.stage}]" if self.stage else ""
        return f"{code}{self.smtp_message}{where}"

    def __reduce__(self) -> tuple[Any, ...]:
        # Keyword-only state is not in self.args, so pickling (e.g. across processes) needs it spelled out.
        state = {"stage": self.stage, "refused": self.refused, "maybe_delivered": self.maybe_delivered}
        return (type(self), (self.smtp_message, self.smtp_code), state)


class TemporaryFailure(DeliveryError):
    """4xx reply, refused or lost connection, timeout or TLS failure: retry later."""

    permanent = False


class PermanentFailure(DeliveryError):
    """5xx reply: do not retry the same message to the same recipient."""

    permanent = True


@dataclass
class SendResult:
    """The relay's reply to end-of-DATA, plus any recipients it refused while accepting others."""

    smtp_code: int
    smtp_message: str
    refused: dict[str, tuple[int, str]] = field(default_factory=dict)


class ConnectionLost(Exception):
    """Internal: the connection died or announced its closing mid-transaction."""

    def __init__(self, stage: str, text: str, code: int | None = None, *, committed: bool = False) -> None:
        super().__init__(text)
        self.stage = stage
        self.text = text
        self.code = code
        # True once the whole message including its terminator was written: the relay may have accepted it.
        self.committed = committed

    def failure(self) -> TemporaryFailure:
        """Turn into the public error."""
        text = self.text
        if self.committed and self.code is None:
            # No reply at all to the end of DATA: the relay may or may not have taken responsibility for it.
            text += " (after the message was sent; it may have been delivered)"
        return TemporaryFailure(text, self.code, stage=self.stage,
                                maybe_delivered=self.committed and self.code is None)


def reply_text(raw: bytes | str) -> str:
    """Decode a server reply for humans and logs."""
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw


def reply_error(
    code: int, text: str, stage: str, refused: Mapping[str, tuple[int, str]] | None = None
) -> DeliveryError:
    """Classify an SMTP error reply."""
    cls = PermanentFailure if 500 <= code < 600 else TemporaryFailure
    return cls(text, code, stage=stage, refused=refused)
