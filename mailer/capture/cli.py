"""``python -m mailer.capture``: run the capture server in the foreground, one log line per message."""

from __future__ import annotations

import argparse
import logging
import signal
import threading

from mailer import capture
from mailer.capture.outbox import Outbox
from mailer.capture.server import CaptureServer

logger = logging.getLogger(__name__)


def main(argv: list[str] | None = None) -> int:
    """Run the capture server in the foreground until SIGINT/SIGTERM, logging one line per message."""
    parser = argparse.ArgumentParser(prog="python -m mailer.capture", description=capture.__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: %(default)s)")
    parser.add_argument("--port", type=int, default=2525, help="port, 0 for any free one (default: %(default)s)")
    parser.add_argument("--outbox", default="instance/outbox", help="outbox directory (default: %(default)s)")
    parser.add_argument(
        "--max-message-size",
        type=int,
        default=10_000_000,
        help="reject larger messages with 552 (default: %(default)s)",
    )
    args = parser.parse_args(argv)

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # aiosmtpd logs several INFO lines per connection; keep the promised one line per message.
    logging.getLogger("mail.log").setLevel(logging.WARNING)

    try:
        outbox = Outbox(args.outbox)
    except OSError as exc:
        logger.error("Cannot open outbox %s: %s", args.outbox, exc)
        return 1
    server = CaptureServer(outbox, host=args.host, port=args.port, max_message_size=args.max_message_size)

    stop = threading.Event()
    received: list[int] = []

    def request_stop(signum: int, frame: object) -> None:
        # Only flag it: logging here could contend for a handler lock the interrupted code holds.
        received.append(signum)
        stop.set()

    # Installed before start() so a signal that arrives early still means a clean exit.
    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except OSError as exc:
            logger.error("Cannot listen on %s:%d: %s", args.host, args.port, exc)
            return 1
        stop.wait()
        logger.info("Received %s, shutting down", signal.Signals(received[0]).name)
        server.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0
