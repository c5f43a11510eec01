"""A green test run leaves no embedded redis-server running and nothing of its own in the temp folder."""

from __future__ import annotations

import getpass
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.slow
def test_a_green_run_stops_its_redis_and_cleans_the_temp_folder(tmp_path: Path) -> None:
    tmp = tmp_path / "tmp"
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("TEST_REDIS_URL", "TEST_DATABASE_URL")}
    env["TMPDIR"] = str(tmp)
    # A test that uses the embedded Redis through the app's runtime and the in-process worker.
    run = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                          "tests/campaigns/ops/test_outbox.py::test_the_web_version_opened_from_the_admin_records_nothing"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    left = sorted(str(p.relative_to(tmp)) for p in tmp.rglob("*"))
    # pytest's per-user root (shared by every run) may stay, empty.
    assert left in ([], [f"pytest-of-{getpass.getuser()}"]), left
    servers = [p.info["cmdline"] for p in psutil.process_iter(["cmdline"])
               if p.info["cmdline"] and "redis-server" in p.info["cmdline"][0]
               and any(str(tmp) in part for part in p.info["cmdline"])]
    assert servers == []
