"""deploy/: the process files start real console scripts with real subcommands, and hold together.

No Docker daemon is assumed: the compose file and the Dockerfile are checked for structure and for paths and commands
that exist, and the compose file by `docker compose config` (or Debian's docker-compose, installed when missing). The
systemd units go through `systemd-analyze verify` (Debian's systemd is installed when missing and we are root), the
nginx example through `nginx -t` (Debian's nginx, or its package unpacked into a temporary folder); each is skipped
with the reason when its tool cannot be had.
"""

from __future__ import annotations

import configparser
import os
import re
import shlex
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import yaml

from campaigns.cli import main as rapport_main
from campaigns.config import Settings
from campaigns.config_checks import unsafe_settings

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = ROOT / "deploy"
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
SCRIPTS = set(PYPROJECT["project"]["scripts"])
# A worker stopping must be allowed to finish its batch: RAPPORT_BATCH_SIZE recipients at 1 message a second.
LONGEST_BATCH_SECONDS = Settings().batch_size


def check_command(argv: list[str]) -> None:
    """argv starts a console script with arguments it accepts."""
    assert argv[0] in SCRIPTS, argv
    if argv[0] == "rapport":
        with pytest.raises(SystemExit) as done:
            rapport_main([argv[1], "--help"])
        assert done.value.code == 0, argv
    else:
        from worker import main as worker_main

        with pytest.raises(SystemExit) as done:
            worker_main([*(re.sub(r"%\w", "x", a) for a in argv[1:]), "--help"])   # systemd's %H, %i
        assert done.value.code == 0, argv


def seconds(value: str) -> int:
    """'15m', '900', '1h30m' (compose and systemd time spans) in seconds."""
    if value.isdigit():
        return int(value)
    units = {"h": 3600, "m": 60, "s": 1, "min": 60}
    return sum(int(n) * units[u] for n, u in re.findall(r"(\d+)\s*(min|h|m|s)", value))


# --- compose ----------------------------------------------------------------------------------------------------

def compose() -> dict:
    return yaml.safe_load((DEPLOY / "compose.yaml").read_text())


def test_compose_runs_postgres_redis_web_and_two_workers() -> None:
    services = compose()["services"]
    assert {"postgres", "redis", "init", "web", "worker", "relay"} <= set(services)
    assert services["worker"]["deploy"]["replicas"] == 2
    assert services["relay"]["profiles"] == ["relay"]   # optional
    for name in ("postgres", "redis", "web", "worker", "relay"):
        assert services[name]["healthcheck"]["test"][0] == "CMD", name
    for name in ("web", "worker"):
        assert services[name]["depends_on"]["init"] == {"condition": "service_completed_successfully"}
    assert services["init"]["depends_on"]["postgres"] == {"condition": "service_healthy"}
    assert seconds(services["worker"]["stop_grace_period"]) > LONGEST_BATCH_SECONDS


def test_compose_commands_are_console_scripts_of_the_image() -> None:
    services = compose()["services"]
    for name in ("init", "web", "worker"):
        service = services[name]
        assert (ROOT / "deploy" / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == \
            DEPLOY / "Dockerfile"
        check_command(service["command"])
        assert service["environment"]["RAPPORT_INSTANCE"] == "/var/lib/rapport"
        assert service["env_file"] == "rapport.env"
    assert "deploy/rapport.env" in (ROOT / ".gitignore").read_text().splitlines()   # secrets stay out of git


def test_compose_config_validates(tmp_path) -> None:
    """`docker compose config` (or Debian's docker-compose 1.29) accepts the file: schema, anchors, conditions."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        command = ["docker", "compose"]
    else:
        command = [debian_tool("docker-compose", "docker-compose")]
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    example = (DEPLOY / "rapport.env.example").read_text()
    (tmp_path / "deploy" / "rapport.env").write_text(example.replace("\nSECRET_KEY=\n", f"\nSECRET_KEY={'k' * 64}\n"))
    for profile in ([], ["--profile", "relay"]):
        done = subprocess.run([*command, "-f", "compose.yaml", *profile, "config", "-q"], cwd=tmp_path / "deploy",
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr


def test_the_web_healthcheck_path_answers(client) -> None:
    test = compose()["services"]["web"]["healthcheck"]["test"]
    (url,) = re.findall(r"http://127\.0\.0\.1:8000(/[^'\"]*)", " ".join(test))
    assert client.get(url).status_code == 200


def test_the_example_environment_is_fit_for_production_once_it_has_a_key() -> None:
    env = {}
    for line in (DEPLOY / "rapport.env.example").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            key, _, value = line.partition("=")
            env[key] = (shlex.split(value) or [""])[0]   # as a shell, systemd and compose read it
    # The example ships without a key, so a copy nobody edited refuses to start instead of using a published one.
    assert [p.split(":")[0] for p in unsafe_settings(env)] == ["SECRET_KEY is not set"]
    assert unsafe_settings({**env, "SECRET_KEY": "k" * 64}) == []
    assert env["POSTAL_ADDRESS"].startswith("Example Ltd, 1 High Street")
    assert env["TRUSTED_PROXIES"] == "1"   # the nginx example is one proxy


# --- Dockerfile -------------------------------------------------------------------------------------------------

def test_dockerfile_builds_the_wheel_and_runs_it_as_a_user() -> None:
    lines = [ln.strip() for ln in (DEPLOY / "Dockerfile").read_text().splitlines() if ln.strip()]
    stages = [ln for ln in lines if ln.startswith("FROM ")]
    assert len(stages) == 2 and stages[0].endswith(" AS build")
    copied = set()
    for line in lines:
        if line.startswith("COPY ") and "--from=" not in line:
            *sources, _dest = shlex.split(line)[1:]
            copied.update(sources)
    for source in copied:
        assert (ROOT / source).exists(), source
    # Everything the wheel is built from: packages (through package-dir), modules, the readme.
    setuptools = PYPROJECT["tool"]["setuptools"]
    needed = {"pyproject.toml", PYPROJECT["project"]["readme"], *(f"{m}.py" for m in setuptools["py-modules"])}
    for package in setuptools["packages"]:
        top = next((d for p, d in setuptools["package-dir"].items() if p and package.startswith(p)),
                   package.split(".")[0])
        needed.add(top.split("/")[0])
    assert needed <= copied, needed - copied
    final = lines[lines.index(stages[1]):]
    assert "COPY --from=build /wheels /wheels" in final
    assert any(ln.startswith("RUN pip install --no-index --find-links /wheels rapport") for ln in final)
    users = [ln.split()[1] for ln in final if ln.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    cmd = next(ln for ln in final if ln.startswith("CMD "))
    check_command(yaml.safe_load(cmd.removeprefix("CMD ")))


# --- Procfile ---------------------------------------------------------------------------------------------------

def test_procfile() -> None:
    kinds = {}
    for line in (DEPLOY / "Procfile").read_text().splitlines():
        if line and not line.startswith("#"):
            kind, _, command = line.partition(":")
            kinds[kind] = [w for w in shlex.split(command) if "=" not in w]
    assert set(kinds) == {"release", "web", "worker"}
    assert kinds["release"] == ["rapport", "init"]
    for argv in kinds.values():
        check_command(argv)


# --- systemd ----------------------------------------------------------------------------------------------------

def unit(name: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(interpolation=None, strict=True)
    parser.optionxform = str
    parser.read(DEPLOY / "systemd" / name)
    return parser


def test_units_restart_and_outlast_a_batch() -> None:
    web, worker = unit("rapport-web.service"), unit("rapport-worker@.service")
    for service in (web, worker):
        assert service["Service"]["Restart"] == "always"
        assert service["Service"]["EnvironmentFile"] == "/etc/rapport/rapport.env"
        assert service["Service"]["User"] == "rapport"
        check_command([Path(a).name if i == 0 else a
                       for i, a in enumerate(shlex.split(service["Service"]["ExecStart"]))])
    assert seconds(worker["Service"]["TimeoutStopSec"]) > LONGEST_BATCH_SECONDS
    assert worker["Service"]["KillMode"] == "mixed" and worker["Service"]["KillSignal"] == "SIGTERM"
    assert "%i" in worker["Service"]["ExecStart"]   # a template: rapport-worker@1, @2, …
    drain = unit("rapport-drain-hits.service")
    check_command([Path(a).name if i == 0 else a for i, a in enumerate(shlex.split(drain["Service"]["ExecStart"]))])


def debian_tool(binary: str, package: str) -> str:
    """The path of a Debian tool, installing its package when missing and we are root; skip when impossible."""
    path = shutil.which(binary)
    if path:
        return path
    if os.geteuid() != 0:
        pytest.skip(f"{binary} is not installed and only root can apt-get install {package}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", package]
    log = ""
    for step in (install, ["apt-get", "update", "-q"], install):
        try:
            proc = subprocess.run(step, env=env, capture_output=True, text=True, timeout=900)
        except (OSError, subprocess.TimeoutExpired) as exc:
            pytest.skip(f"could not install {package}: {exc}")
        log = proc.stdout[-2000:] + proc.stderr[-2000:]
        if step is install and proc.returncode == 0:
            break
    path = shutil.which(binary)
    if path is None:
        pytest.skip(f"could not install {package}:\n{log}")
    return path


def test_systemd_analyze_verify(tmp_path) -> None:
    analyze = debian_tool("systemd-analyze", "systemd")
    # The units name /opt/rapport/venv; verify checks that ExecStart is executable, so point it at this venv.
    bin_dir = Path(sys.executable).parent
    assert (bin_dir / "rapport").exists() and (bin_dir / "rapport-worker").exists()
    names = {"rapport-web.service": "rapport-web.service", "rapport-worker@.service": "rapport-worker@1.service",
             "rapport-drain-hits.service": "rapport-drain-hits.service",
             "rapport-drain-hits.timer": "rapport-drain-hits.timer"}
    assert {p.name for p in (DEPLOY / "systemd").iterdir()} == set(names)
    for source, target in names.items():
        text = (DEPLOY / "systemd" / source).read_text().replace("/opt/rapport/venv/bin/", f"{bin_dir}/")
        (tmp_path / target).write_text(text)
    done = subprocess.run([analyze, "verify", *(str(tmp_path / t) for t in names.values())], capture_output=True,
                          text=True, timeout=120, cwd=tmp_path)
    if done.returncode != 0 and "Failed to" in done.stderr and "bus" in done.stderr.lower():
        pytest.skip(f"systemd-analyze cannot run in this container: {done.stderr[-500:]}")
    # verify reports unknown keys and bad values on stderr but exits 0: any output is a finding.
    assert done.returncode == 0 and done.stdout.strip() == "" and done.stderr.strip() == "", done.stderr


# --- nginx ------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="session")
def nginx_binary(tmp_path_factory: pytest.TempPathFactory) -> str:
    """nginx: the installed one, else Debian's package unpacked into a temporary folder (never installed: the
    package would start a server); skipped with the reason when neither is possible."""
    path = shutil.which("nginx")
    if path:
        return path
    folder = tmp_path_factory.mktemp("nginx")
    download = ["apt-get", "download", "nginx"]
    done = subprocess.run(download, cwd=folder, capture_output=True, text=True, timeout=300)
    if done.returncode != 0 and os.geteuid() == 0:
        subprocess.run(["apt-get", "update", "-q"], capture_output=True, timeout=900)
        done = subprocess.run(download, cwd=folder, capture_output=True, text=True, timeout=300)
    debs = list(folder.glob("nginx_*.deb"))
    if done.returncode != 0 or not debs:
        pytest.skip(f"nginx is not installed and its Debian package could not be downloaded: {done.stderr[-500:]}")
    subprocess.run(["dpkg-deb", "-x", str(debs[0]), str(folder / "root")], check=True, timeout=120)
    return str(folder / "root" / "usr" / "sbin" / "nginx")


def test_nginx_example_forwards_what_rapport_trusts() -> None:
    conf = (DEPLOY / "nginx" / "rapport.conf").read_text()
    import campaigns.gunicorn_conf as gunicorn_conf

    assert f"server {gunicorn_conf.bind};" in conf
    for header in ("X-Forwarded-For $remote_addr", "X-Forwarded-Proto $scheme", "X-Forwarded-Host $host"):
        assert f"proxy_set_header {header};" in conf
    assert "client_max_body_size 512m;" in conf   # the import limit (RAPPORT_IMPORT_MAX_BYTES)
    assert f"proxy_read_timeout {gunicorn_conf.timeout}s;" in conf


def test_nginx_accepts_the_example(nginx_binary, tmp_path) -> None:
    key, cert = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=mail.example.com",
                    "-keyout", str(key), "-out", str(cert), "-days", "1"], check=True, capture_output=True)
    site = (DEPLOY / "nginx" / "rapport.conf").read_text() \
        .replace("/etc/letsencrypt/live/mail.example.com/fullchain.pem", str(cert)) \
        .replace("/etc/letsencrypt/live/mail.example.com/privkey.pem", str(key))
    (tmp_path / "site.conf").write_text(site)
    temp = " ".join(f"{kind}_temp_path {tmp_path}/{kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi",
                                                                         "scgi"))
    (tmp_path / "nginx.conf").write_text(f"pid {tmp_path}/nginx.pid; error_log {tmp_path}/error.log;\nevents {{}}\n"
                                         f"http {{ access_log off; {temp} include {tmp_path}/site.conf; }}\n")
    done = subprocess.run([nginx_binary, "-t", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and "test is successful" in done.stderr, done.stderr
