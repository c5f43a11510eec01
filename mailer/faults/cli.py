"""``python -m mailer.faults``: run the fault server in the foreground with a policy built from the command line."""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Sequence
from pathlib import Path

from mailer import faults
from mailer.faults.policy import FaultPolicy
from mailer.faults.server import FaultServer


def main(argv: Sequence[str] | None = None) -> int:
    """Run the fault server in the foreground until SIGTERM or Ctrl-C."""
    p = argparse.ArgumentParser(description=faults.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=2526)
    p.add_argument("--log", required=True, help="JSON-lines file every accepted message and fault is appended to")
    p.add_argument("--fsync", action="store_true", help="fsync each log line (survives a machine crash)")
    p.add_argument("--seed", type=int, default=0)
    for name in ("connect_421", "data_451", "drop_before_dot", "drop_after_dot", "slow"):
        p.add_argument("--" + name.replace("_", "-"), type=float, default=0.0, help=f"share: {name}")
    p.add_argument("--slow-seconds", type=float, default=1.0)
    p.add_argument("--reject", action="append", default=[], help="an address refused with 550 (repeatable)")
    p.add_argument("--script", type=Path, help='JSON {"address": ["drop_before_dot", "ok", …]}')
    p.add_argument("--port-file", type=Path, help="write the listening port here once ready (with --port 0)")
    args = p.parse_args(argv)
    script = json.loads(args.script.read_text()) if args.script else {}
    policy = FaultPolicy(seed=args.seed, connect_421=args.connect_421, data_451=args.data_451,
                         drop_before_dot=args.drop_before_dot, drop_after_dot=args.drop_after_dot, slow=args.slow,
                         slow_seconds=args.slow_seconds, reject=frozenset(a.lower() for a in args.reject),
                         script={k.lower(): tuple(v) for k, v in script.items()})
    server = FaultServer(policy, host=args.host, port=args.port, log_path=args.log, fsync=args.fsync)

    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    server.start()
    if args.port_file:
        args.port_file.write_text(str(server.port))
    try:
        stop.wait()
    finally:
        server.stop()
    return 0
