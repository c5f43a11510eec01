"""DKIM signing in a helper process, beside the thread that renders: the send path's pipelined signer.

A worker renders messages in one thread; signing one (the body hash over ~50 KB and the RSA signature) took about
half of that thread's time, and each of the two let go of the GIL and had to wait to get it back from the sender
threads. Here the rendering thread hands (headers, body) to a child process and carries on with the next
recipient; it collects the signature a message or two later, when it is long ready. The child is this module run
by the same Python, fed its keys over its stdin (never argv or the environment), and signs with
the same DKIMSigner, so its output is byte for byte what signing in-process gives.

The child exits when its stdin closes: a parent killed with SIGKILL takes it along. If the child dies or answers
nonsense, every message it still owed is signed in-process and the next one starts a new child (at most once per
RESTART_AFTER seconds); nothing is lost and nothing goes out unsigned. A signing error (a header that is not
ASCII, a body with bare LF) is raised from result() as the same ValueError that DKIMSigner.sign raises.

Frames both ways: a 4-byte big-endian length, then a pickle. Only this module's two ends write them.
"""

from __future__ import annotations

import logging
import os
import pickle
import signal
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from cryptography.hazmat.primitives import serialization

from mailer.dkim import DKIMKey, DKIMSigner

logger = logging.getLogger(__name__)

RESTART_AFTER = 30.0        # seconds before a new child after one died
_LENGTH = struct.Struct(">I")
_PIPE_BYTES = 1 << 20       # ask for 1 MB pipes (Linux), so a few queued messages never block the writer
_F_SETPIPE_SZ = 1031        # fcntl.F_SETPIPE_SZ (Linux; named in fcntl only on some builds)

Headers = Sequence[tuple[str, str]]
# The child imports this very copy of the package (not whatever `mailer` the working directory holds).
_PACKAGE_ROOT = str(Path(__file__).resolve().parent.parent)
_BOOT = "import sys; sys.path.insert(0, sys.argv[1]); from mailer.dkim_helper import main; sys.exit(main())"


class HelperFailed(Exception):
    """The helper process is gone or answered out of protocol (signed in-process instead)."""


def _write_frame(stream: IO[bytes], obj: Any) -> None:
    data = pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)
    stream.write(_LENGTH.pack(len(data)))
    stream.write(data)
    stream.flush()


def _read_frame(stream: IO[bytes]) -> Any:
    head = stream.read(_LENGTH.size)
    if len(head) < _LENGTH.size:
        raise EOFError("stream closed")
    (size,) = _LENGTH.unpack(head)
    data = stream.read(size)
    if len(data) < size:
        raise EOFError("stream closed inside a frame")
    return pickle.loads(data)


def _grow_pipe(fd: int) -> None:
    try:
        import fcntl  # POSIX only; the pipe works at its default size without it
        fcntl.fcntl(fd, _F_SETPIPE_SZ, _PIPE_BYTES)
    except (ImportError, OSError):
        pass


class SigningProcess:
    """Signs with `signer`'s keys in a child process: submit() now, result() later, in any order of tickets.

    Thread-safe; meant for one rendering thread per process. close() ends the child.
    """

    def __init__(self, signer: DKIMSigner) -> None:
        self.signer = signer
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._next = 0               # the next ticket
        self._read = 0               # tickets below this have been answered (or signed here)
        self._owed: dict[int, tuple[Headers, bytes, int | None]] = {}   # asked of the child, not read yet
        self._answers: dict[int, tuple] = {}    # read, not collected yet
        self._failed_at = -RESTART_AFTER
        self.restarts = 0
        self._owner_pid = os.getpid()

    # ---------------------------------------------------------------- the child

    def _config(self) -> tuple:
        keys = [(key.domain, key.selector,
                 key.private_key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                               serialization.NoEncryption()))
                for key in self.signer.keys]
        return keys, self.signer.signed_headers

    def _forked(self) -> None:
        """In a forked process (a worker's --fork job child): the parent's child and its pipes are the parent's.
        Forget them (closing our copies of the pipes leaves the parent's open) and start afresh."""
        if self._owner_pid == os.getpid():
            return
        self._owner_pid = os.getpid()
        proc, self._proc = self._proc, None
        for stream in (proc.stdin, proc.stdout) if proc is not None else ():
            try:
                stream.close()
            except OSError:
                pass
        self._owed.clear()
        self._answers.clear()
        self._failed_at = -RESTART_AFTER

    def _child(self) -> subprocess.Popen[bytes] | None:
        """The running child, started on demand; None while a dead one's pause lasts (sign in-process)."""
        if self._proc is not None:
            return self._proc
        if time.monotonic() - self._failed_at < RESTART_AFTER:
            return None
        try:
            proc = subprocess.Popen([sys.executable, "-c", _BOOT, _PACKAGE_ROOT], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, close_fds=True)
            assert proc.stdin is not None and proc.stdout is not None
            _grow_pipe(proc.stdin.fileno())
            _write_frame(proc.stdin, self._config())
        except OSError as exc:
            self._failed(f"could not start: {exc}")
            return None
        self._proc = proc
        self.restarts += 1
        return proc

    def _failed(self, why: str) -> None:
        logger.warning("DKIM helper process failed (%s); signing in the worker process for %.0f s", why,
                       RESTART_AFTER)
        self._failed_at = time.monotonic()
        proc, self._proc = self._proc, None
        if proc is not None:
            _stop(proc)

    # ---------------------------------------------------------------- the caller's side

    def submit(self, headers: Headers, body: bytes, *, timestamp: int | None = None) -> int:
        """Ask for the DKIM-Signature lines of one message; returns a ticket for result()."""
        with self._lock:
            self._forked()
            ticket = self._next
            self._next += 1
            self._owed[ticket] = (headers, body, timestamp)
            proc = self._child()
            if proc is not None:
                try:
                    _write_frame(proc.stdin, (headers, body, timestamp))
                except (OSError, ValueError) as exc:    # ValueError: the pipe was closed under us
                    self._failed(f"write: {exc}")
            if self._proc is None:
                self._sign_owed_here()
            return ticket

    def result(self, ticket: int) -> bytes:
        """The signature lines for a ticket (b"" never: at least one key signs); raises what signing raised."""
        with self._lock:
            while ticket not in self._answers:
                if self._proc is None:
                    self._sign_owed_here()
                    continue
                try:
                    answer = _read_frame(self._proc.stdout)
                    if not (isinstance(answer, tuple) and answer and answer[0] in ("ok", "error")):
                        raise HelperFailed(f"unexpected answer {answer!r:.80}")
                except (OSError, EOFError, HelperFailed, pickle.UnpicklingError) as exc:
                    self._failed(f"read: {exc}")
                    continue
                done = min(self._owed)
                del self._owed[done]
                self._answers[done] = answer
            answer = self._answers.pop(ticket)
        if answer[0] == "error":
            raise ValueError(answer[1])
        return answer[1]

    def _sign_owed_here(self) -> None:
        """Sign every message the child still owed in this process (it is gone)."""
        for ticket in sorted(self._owed):
            headers, body, timestamp = self._owed.pop(ticket)
            try:
                self._answers[ticket] = ("ok", self.signer.sign(headers, body, timestamp=timestamp))
            except ValueError as exc:
                self._answers[ticket] = ("error", str(exc))

    def close(self) -> None:
        """End the child (after the messages it holds, which nobody will collect)."""
        with self._lock:
            proc, self._proc = self._proc, None
            if proc is not None:
                _stop(proc)

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None


def _stop(proc: subprocess.Popen[bytes]) -> None:
    for stream in (proc.stdin, proc.stdout):
        try:
            if stream is not None:
                stream.close()
        except OSError:
            pass
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


# -------------------------------------------------------------------- the child process

def _serve(stdin: IO[bytes], stdout: IO[bytes]) -> None:
    """Read the keys, then sign each message read until stdin closes."""
    keys, signed_headers = _read_frame(stdin)
    signer = DKIMSigner([DKIMKey.from_pem(domain, selector, pem) for domain, selector, pem in keys],
                        signed_headers)
    while True:
        try:
            headers, body, timestamp = _read_frame(stdin)
        except EOFError:
            return
        try:
            answer: tuple = ("ok", signer.sign(headers, body, timestamp=timestamp))
        except ValueError as exc:
            answer = ("error", str(exc))
        _write_frame(stdout, answer)


def main() -> int:
    # The worker decides when to stop: Ctrl-C in a terminal or a TERM to the process group must not end signing
    # under a worker that is finishing its messages. Its exit (or death) closes our stdin, which ends us.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    stdout = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    sys.stdout = sys.stderr          # a stray print must never corrupt the frames
    try:
        _serve(sys.stdin.buffer, stdout)
    except (BrokenPipeError, EOFError):
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
