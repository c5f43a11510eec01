"""Shared storage: the same contract on a local directory and on an S3-compatible server (moto's, on loopback);
an import uploaded to one machine's web app is read by a worker with another instance directory."""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Iterator
from pathlib import Path

import pytest
from rq import SimpleWorker
from sqlalchemy import func, select

from campaigns import storage as storage_module
from campaigns.config import ConfigError, Settings
from campaigns.models import Contact
from campaigns.runtime import Runtime, install
from campaigns.storage import LocalStorage, S3Storage, Storage, for_settings
from campaigns.web.app import create_app
from tests.campaigns.contacts.test_import import map_and_start, upload
from tests.campaigns.web.test_access import add_user, login
from tests.helpers import fresh


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_server() -> Iterator[str]:
    """moto's S3-compatible server on a free loopback port; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture()
def s3_url(s3_server: str, tmp_path: Path) -> str:
    """A fresh bucket on the server, as a STORAGE_URL with credentials and a prefix."""
    bucket = f"rapport-{tmp_path.name.lower().replace('_', '-')[-40:]}".rstrip("-")
    url = f"s3://test-key:test-secret@{bucket}/files?endpoint={s3_server}&region=eu-central-1"
    S3Storage(url).client.create_bucket(Bucket=bucket,
                                        CreateBucketConfiguration={"LocationConstraint": "eu-central-1"})
    return url


@pytest.fixture(params=["local", "s3"])
def storage(request, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "files")
    return S3Storage(request.getfixturevalue("s3_url"))


def test_storage_contract(storage: Storage) -> None:
    assert not storage.exists("imports/a.csv")
    with pytest.raises(FileNotFoundError):
        storage.open("imports/a.csv")
    out = storage.create("imports/a.csv")
    out.write(b"email\n" + b"x@example.com\n" * 10_000)
    assert not storage.exists("imports/a.csv")          # nobody sees a half-written file
    out.close()
    assert storage.exists("imports/a.csv")
    with storage.open("imports/a.csv") as fh:
        assert fh.read(6) == b"email\n"
        assert fh.tell() == 6
        rest = fh.read()
    assert len(rest) == 14 * 10_000 and fh.closed
    with storage.create("imports/a.csv") as again:       # replaces
        again.write(b"new")
    assert storage.open("imports/a.csv").read() == b"new"
    import io

    assert storage.save("imports/b.errors.csv", io.BytesIO(b"x" * 200_000)) == 200_000
    listed = dict(storage.list("imports/"))
    assert set(listed) == {"imports/a.csv", "imports/b.errors.csv"}
    assert all(dt.datetime.now(dt.UTC) - t < dt.timedelta(minutes=5) for t in listed.values())
    storage.touch("imports/a.csv")
    with pytest.raises(FileNotFoundError):
        storage.touch("imports/none.csv")
    storage.delete("imports/a.csv")
    storage.delete("imports/a.csv")                      # twice is fine
    assert [k for k, _ in storage.list("imports/")] == ["imports/b.errors.csv"]
    for bad in ("../etc/passwd", "/abs", "imports/../x", "a//b", ""):
        with pytest.raises(ValueError):
            storage.exists(bad)


def test_storage_url_choice(tmp_path: Path) -> None:
    assert isinstance(for_settings(Settings(instance_path=tmp_path)), LocalStorage)
    chosen = for_settings(Settings(instance_path=tmp_path, storage_url=f"file://{tmp_path}/shared"))
    assert isinstance(chosen, LocalStorage) and chosen.root == tmp_path / "shared"
    with pytest.raises(ConfigError):
        storage_module._build(Settings(storage_url="s3:///no-bucket"))
    from campaigns.config import from_env

    with pytest.raises(ConfigError, match="STORAGE_URL"):
        from_env({"STORAGE_URL": "ftp://files", "SECRET_KEY": "x" * 40, "RAPPORT_INSTANCE": str(tmp_path)})


def two_machines(runtime: Runtime, tmp_path: Path, storage_url: str):
    """The web app on "machine A" and a worker runtime on "machine B": same database and Redis, own instance dirs."""
    web_settings = runtime.settings.with_overrides({"instance_path": tmp_path / "web-a", "storage_url": storage_url})
    app = create_app({"SETTINGS": web_settings, "TESTING": True})
    app.extensions["rapport"].use_redis(runtime.redis)
    worker_rt = Runtime(runtime.settings.with_overrides({"instance_path": tmp_path / "worker-b",
                                                         "storage_url": storage_url}))
    worker_rt.use_redis(runtime.redis)
    return app, worker_rt


def run_worker_on(worker_rt: Runtime, runtime: Runtime) -> None:
    install(worker_rt)
    try:
        SimpleWorker([worker_rt.queue], connection=worker_rt.redis).work(burst=True, logging_level="WARNING")
    finally:
        install(runtime)


CSV = "email,first_name\nana@example.com,Ana\nnot-an-address,Bob\nlea@example.com,Léa\n".encode()


def test_import_with_web_and_worker_on_different_machines_sharing_s3(runtime, db_session, s3_url,
                                                                     tmp_path: Path) -> None:
    app, worker_rt = two_machines(runtime, tmp_path, s3_url)
    client = app.test_client()
    add_user(db_session, "ed@shop.test", "editor")
    assert login(client, "ed@shop.test").status_code == 302
    r = upload(client, CSV)
    assert r.status_code == 302
    r = map_and_start(client, r.headers["Location"])
    assert r.status_code == 302
    run_worker_on(worker_rt, runtime)
    assert worker_rt.queue.failed_job_registry.count == 0
    progress = client.get(r.headers["Location"].replace("/status", "/progress")).get_json()
    assert (progress["state"], progress["created"], progress["failed"]) == ("finished", 2, 1)
    emails = set(fresh(db_session).scalars(select(Contact.email)))
    assert emails == {"ana@example.com", "lea@example.com"}
    report = client.get(r.headers["Location"].replace("/status", "/errors.csv"))
    assert report.status_code == 200
    assert "not-an-address" in report.get_data(as_text=True)
    # Nothing went to either machine's disk: the upload and the report live in the bucket; the upload is gone.
    assert not (tmp_path / "web-a" / "imports").exists() and not (tmp_path / "worker-b" / "imports").exists()
    keys = [k for k, _ in S3Storage(s3_url).list("imports/")]
    assert len(keys) == 1 and keys[0].endswith(".errors.csv")
    worker_rt.close()


def test_without_shared_storage_the_other_machine_cannot_read_the_upload(runtime, db_session,
                                                                         tmp_path: Path) -> None:
    app, worker_rt = two_machines(runtime, tmp_path, "")
    client = app.test_client()
    add_user(db_session, "ed@shop.test", "editor")
    login(client, "ed@shop.test")
    r = map_and_start(client, upload(client, CSV).headers["Location"])
    run_worker_on(worker_rt, runtime)
    progress = client.get(r.headers["Location"].replace("/status", "/progress")).get_json()
    assert progress["state"] == "failed" and "no longer there" in progress["message"]
    assert fresh(db_session).scalar(select(func.count()).select_from(Contact)) == 0
    worker_rt.close()


def test_export_written_by_a_worker_on_another_machine_downloads_from_the_web(runtime, db_session, s3_url,
                                                                               make_contacts, tmp_path: Path) -> None:
    """Export files go through the shared storage too: a worker elsewhere writes it, the web app serves it."""
    make_contacts(3)
    app, worker_rt = two_machines(runtime, tmp_path, s3_url)
    client = app.test_client()
    add_user(db_session, "ed@shop.test", "editor")
    assert login(client, "ed@shop.test").status_code == 302
    token = client.get("/admin/contacts/export").get_data(as_text=True).split('name="csrf_token" value="')[1]
    r = client.post("/admin/contacts/exports", data={"csrf_token": token.split('"')[0], "status": ""})
    assert r.status_code == 303
    export_id = r.headers["Location"].rstrip("/").rsplit("/", 1)[1]
    run_worker_on(worker_rt, runtime)
    assert worker_rt.queue.failed_job_registry.count == 0
    download = client.get(f"/admin/contacts/exports/{export_id}/download")
    assert download.status_code == 200
    assert download.get_data(as_text=True).lstrip("\ufeff").count("\n") == 4    # header + 3 contacts
    assert not (tmp_path / "web-a" / "exports").exists() and not (tmp_path / "worker-b" / "exports").exists()
    assert [k for k, _ in S3Storage(s3_url).list("exports/")] == [f"exports/{export_id}.csv"]
    worker_rt.close()
