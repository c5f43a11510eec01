"""The moving parts bench/chaos.py breaks on purpose: workers, the fault relay, a Redis server, a database proxy.

Each part is real and runs as production would: `worker.py` processes (restarted when they die, as a process
supervisor does), `python -m mailer.faults` as its own process, `redis-server`, and a TCP proxy in front of
PostgreSQL that can cut every connection and refuse new ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
RESTART_SECONDS = 1.0      # as systemd's RestartSec=1: a dead worker is started again after this long


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float = 30.0) -> None:
    """Return once host:port accepts a connection; raise after timeout."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as s:
            if s.connect_ex((host, port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {host}:{port} after {timeout:.0f} s")


def say(text: str) -> None:
    """Progress for the person watching; stdout carries only the JSON lines."""
    print(text, file=sys.stderr, flush=True)


class FaultRelay:
    """`python -m mailer.faults` as its own process, logging to work/faults.jsonl."""

    def __init__(self, work: Path, options: list[str]) -> None:
        self.log = work / "faults.jsonl"
        port_file = work / "faults.port"
        self.proc = subprocess.Popen([sys.executable, "-m", "mailer.faults", "--port", "0", "--port-file",
                                      str(port_file), "--log", str(self.log), *options], cwd=ROOT,
                                     stderr=open(work / "faults.stderr", "wb"))
        deadline = time.monotonic() + 30
        while not (port_file.exists() and port_file.read_text()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("the fault server did not start; see faults.stderr")
            time.sleep(0.05)
        self.port = int(port_file.read_text())

    def close(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


class GroundTruth:
    """What the fault relay answered, read incrementally from its log: the only source of delivery figures."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._lock = threading.Lock()
        self.accepted: dict[str, list[dict[str, Any]]] = defaultdict(list)
        self.events: Counter[str] = Counter()
        self.dropped_after_dot: set[str] = set()

    def poll(self) -> int:
        """Read lines appended since the last poll; return how many distinct recipients were answered 250."""
        with self._lock:
            try:
                with open(self.path, "rb") as fh:
                    fh.seek(self._offset)
                    chunk = fh.read()
            except FileNotFoundError:
                return 0
            end = chunk.rfind(b"\n") + 1      # a line still being written waits for the next poll
            self._offset += end
            for line in chunk[:end].splitlines():
                record = json.loads(line)
                self.events[record["event"]] += 1
                if record["event"] == "accepted":
                    for rcpt in record["rcpt"]:
                        self.accepted[rcpt].append(record)
                elif record["event"] == "drop_after_dot":
                    self.dropped_after_dot.update(record["rcpt"])
            return len(self.accepted)


class Workers:
    """`worker.py` processes with the periodic scheduler on, as in production; dead ones are restarted."""

    def __init__(self, env: dict[str, str], count: int, logs: Path) -> None:
        self.env = env
        self.logs = logs
        self.procs: list[subprocess.Popen | None] = [None] * count
        self.died_at: dict[int, float] = {}
        self.started = 0
        self.kills = 0
        self.kill_times: list[float] = []   # time.time() of each SIGKILL
        self.exits: list[int] = []          # exit codes of deaths the harness did not cause
        self.orphans = 0                    # killed workers whose child processes outlived them
        self._groups: list[int] = []
        self._killed: set[int] = set()
        self._lock = threading.Lock()
        for i in range(count):
            self._start(i)

    def _start(self, i: int) -> None:
        self.started += 1
        log = open(self.logs / f"worker-{i}.log", "ab")
        # A process group of its own: the harness kills only the worker process, as a crash would, and sees
        # afterwards whether a child of it (a forked scheduler) lived on.
        self.procs[i] = subprocess.Popen([sys.executable, str(ROOT / "worker.py"), "--name",
                                          f"chaos-{i}-{self.started}"], env=self.env, cwd=ROOT,
                                         stdout=subprocess.DEVNULL, stderr=log, start_new_session=True)
        self._groups.append(self.procs[i].pid)
        log.close()

    def kill(self, i: int) -> None:
        """SIGKILL worker i (the supervisor starts it again)."""
        with self._lock:
            proc = self.procs[i]
            if proc is not None and proc.poll() is None:
                self._killed.add(proc.pid)
                proc.kill()
                self.kill_times.append(time.time())
                self.kills += 1

    def alive(self) -> list[int]:
        with self._lock:
            return [i for i, p in enumerate(self.procs) if p is not None and p.poll() is None]

    def supervise(self) -> None:
        """Restart every worker that has been dead for RESTART_SECONDS, noting deaths nobody caused."""
        with self._lock:
            now = time.monotonic()
            for i, proc in enumerate(self.procs):
                if proc is None or proc.poll() is None:
                    continue
                if i not in self.died_at:
                    self.died_at[i] = now
                    if proc.pid not in self._killed:
                        self.exits.append(proc.returncode)
                        say(f"  worker {i} exited by itself with {proc.returncode}; restarting it")
                if now - self.died_at[i] >= RESTART_SECONDS:
                    del self.died_at[i]
                    self._start(i)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), SIGKILL after 30 s; then count and end what killed workers left behind."""
        with self._lock:
            procs = [p for p in self.procs if p is not None and p.poll() is None]
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
            for group in self._groups:
                try:
                    os.killpg(group, 0)
                except (ProcessLookupError, PermissionError):
                    continue            # nothing of that worker is left
                if group in self._killed:
                    self.orphans += 1
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(group, signal.SIGKILL)


def ensure_redis_server() -> str:
    """Path of a redis-server binary, installing Debian's package if there is none."""
    path = shutil.which("redis-server") or "/usr/bin/redis-server"
    if os.path.exists(path):
        return path
    say("installing Debian's redis-server …")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    subprocess.run(["apt-get", "install", "-y", "-qq", "redis-server"], check=True, env=env, capture_output=True)
    return "/usr/bin/redis-server"


class RedisServer:
    """A redis-server of our own on a free port, with an append-only file so a restart keeps the queue."""

    def __init__(self, work: Path) -> None:
        self.binary = ensure_redis_server()
        self.port = free_port()
        self.dir = work / "redis"
        self.dir.mkdir()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen([self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir",
                                      str(self.dir), "--appendonly", "yes", "--save", "", "--protected-mode", "no"],
                                     stdout=open(self.dir / "redis.log", "ab"), stderr=subprocess.STDOUT)
        wait_port("127.0.0.1", self.port)

    def stop(self) -> None:
        """Shut down as an operator's restart does (SIGTERM: the append-only file is synced first)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def restart(self, down: float) -> None:
        self.stop()
        time.sleep(down)
        self.start()


_RESET = struct.pack("ii", 1, 0)   # SO_LINGER on, 0 s: close() resets the connection instead of closing it


class Proxy:
    """A TCP proxy in front of a database server that can cut every connection and refuse new ones for a while."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = free_port()
        self.cuts = 0
        self._pairs: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._listen()

    def _listen(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True, name="db-proxy").start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return          # closed by cut()
            try:
                upstream = socket.create_connection(self.target, timeout=10)
                upstream.settimeout(None)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._pairs.update((client, upstream))
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
        with self._lock:
            self._pairs.discard(src)
        src.close()         # each socket is the source of exactly one pump

    def cut(self, seconds: float) -> None:
        """Reset every connection, refuse new ones (connection refused) for seconds, then accept again."""
        self.cuts += 1
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        with self._lock:
            pairs, self._pairs = list(self._pairs), set()
        for sock in pairs:
            with contextlib.suppress(OSError):
                # Reset on the final close, and wake the pump blocked in recv() (close() alone would not).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, _RESET)
                sock.shutdown(socket.SHUT_RDWR)
        time.sleep(seconds)
        self._listen()

    def close(self) -> None:
        if self._listener is not None:
            with contextlib.suppress(OSError):
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
