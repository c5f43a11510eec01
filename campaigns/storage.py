"""One place for uploaded and generated files (imports, error reports, exports), shared by the web app and workers.

`STORAGE_URL` chooses where they live:

- unset (or `file:///path`): a local directory, by default the instance directory (`instance/imports/…`) — fine
  while the web app and every worker run on one machine or share that directory (NFS);
- `s3://bucket/prefix?endpoint=https://…&region=…`: an S3-compatible object store (AWS S3, MinIO, Ceph, …)
  through boto3 (`pip install 'rapport[s3]'`); credentials come from `s3://KEY:SECRET@bucket/…` or boto3's usual
  sources (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, ~/.aws, an instance role).

Files are named by keys such as `imports/<uuid>.csv`. Readers get a binary stream (streamed from S3, never held in
memory); writers get a binary file that is published under its key only when closed, so a reader never sees half
a file.
"""

from __future__ import annotations

import abc
import datetime as dt
import io
import os
import re
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any
from urllib.parse import parse_qs, unquote, urlsplit

from campaigns.config import ConfigError, Settings

BLOCK = 1 << 16
_KEY = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*$")


def check_key(key: str) -> str:
    """A key is a relative path of plain names (no `..`, no leading slash); ValueError otherwise."""
    if len(key) > 512 or not _KEY.match(key):
        raise ValueError(f"not a storage key: {key!r}")
    return key


class Storage(abc.ABC):
    """Where files live; every method takes a key like `imports/<id>.csv`."""

    @abc.abstractmethod
    def open(self, key: str) -> IO[bytes]:
        """A binary stream of the file (FileNotFoundError if there is none); tell() counts the bytes read."""

    @abc.abstractmethod
    def create(self, key: str) -> IO[bytes]:
        """A writable binary file; its content appears under key when it is closed (replacing an older one)."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether a file is stored under key."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove the file under key; nothing happens if there is none."""

    @abc.abstractmethod
    def touch(self, key: str) -> None:
        """Mark the file as just modified (cleanups go by age); FileNotFoundError if there is none."""

    @abc.abstractmethod
    def list(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        """(key, last modified) of every file whose key starts with prefix (a folder such as `imports/`)."""

    def save(self, key: str, source: IO[bytes]) -> int:
        """Copy a readable binary stream to key in blocks; returns the number of bytes."""
        size = 0
        with self.create(key) as out:
            while block := source.read(BLOCK):
                out.write(block)
                size += len(block)
        return size


class _Publish(io.FileIO):
    """A file written under a temporary name; on close, `publish(path)` moves it into place."""

    def __init__(self, path: str, publish) -> None:
        super().__init__(path, "w")
        self._publish = publish

    def close(self) -> None:
        if self.closed:
            return
        super().close()
        self._publish(self.name)


class LocalStorage(Storage):
    """Files in a directory on this machine (by default the instance directory)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def path(self, key: str) -> Path:
        return self.root / check_key(key)

    def open(self, key: str) -> IO[bytes]:
        return self.path(key).open("rb")

    def create(self, key: str) -> IO[bytes]:
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        fd, part = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".part")
        os.close(fd)
        return io.BufferedWriter(_Publish(part, lambda name: os.replace(name, final)))

    def exists(self, key: str) -> bool:
        return self.path(key).is_file()

    def delete(self, key: str) -> None:
        self.path(key).unlink(missing_ok=True)

    def touch(self, key: str) -> None:
        os.utime(self.path(key))

    def list(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        folder = self.root / check_key(prefix.rstrip("/"))
        if not folder.is_dir():
            return
        for path in folder.iterdir():
            if path.name.startswith("."):
                continue        # a file still being written
            try:
                if path.is_file():
                    yield (f"{prefix.rstrip('/')}/{path.name}",
                           dt.datetime.fromtimestamp(path.stat().st_mtime, dt.UTC))
            except FileNotFoundError:
                continue        # removed meanwhile


class _Body(io.RawIOBase):
    """An S3 object's streaming body as a raw stream that knows its position (progress bars read tell())."""

    def __init__(self, body: Any) -> None:
        self._body, self._pos = body, 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        data = self._body.read(len(buffer))
        n = len(data)
        buffer[:n] = data
        self._pos += n
        return n

    def tell(self) -> int:
        return self._pos

    def close(self) -> None:
        if not self.closed:
            self._body.close()
        super().close()


class S3Storage(Storage):
    """Objects in an S3-compatible bucket under a prefix."""

    def __init__(self, url: str) -> None:
        try:
            import boto3  # an optional dependency (rapport[s3]), imported only for s3:// storage
            from botocore.config import Config  # comes with boto3
        except ImportError:
            raise ConfigError("STORAGE_URL is s3://… but boto3 is not installed: pip install 'rapport[s3]'") from None
        parts = urlsplit(url)
        if not parts.hostname:
            raise ConfigError(f"STORAGE_URL must name a bucket: s3://bucket/prefix, got {url!r}")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        self.bucket = parts.hostname
        self.prefix = parts.path.strip("/")
        endpoint = query.get("endpoint") or None
        credentials = {}
        if parts.username:
            credentials = {"aws_access_key_id": unquote(parts.username),
                           "aws_secret_access_key": unquote(parts.password or "")}
        # Path-style addressing suits MinIO, Ceph and test servers; AWS accepts both.
        style = query.get("addressing", "path" if endpoint else "auto")
        self.client = boto3.session.Session().client(
            "s3", endpoint_url=endpoint, region_name=query.get("region") or None,
            config=Config(s3={"addressing_style": style}, retries={"mode": "standard"}), **credentials)
        self._errors = self.client.exceptions

    def _name(self, key: str) -> str:
        return f"{self.prefix}/{check_key(key)}" if self.prefix else check_key(key)

    def open(self, key: str) -> IO[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._name(key))["Body"]
        except self._errors.NoSuchKey:
            raise FileNotFoundError(key) from None
        return io.BufferedReader(_Body(body), BLOCK)

    def create(self, key: str) -> IO[bytes]:
        name = self._name(key)
        fd, part = tempfile.mkstemp(prefix="rapport-upload-", suffix=".part")
        os.close(fd)

        def publish(path: str) -> None:
            try:
                self.client.upload_file(path, self.bucket, name)    # multipart for large files
            finally:
                os.unlink(path)

        return io.BufferedWriter(_Publish(part, publish))

    def exists(self, key: str) -> bool:
        from botocore.exceptions import ClientError  # optional dependency, see __init__

        try:
            self.client.head_object(Bucket=self.bucket, Key=self._name(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._name(key))

    def touch(self, key: str) -> None:
        if not self.exists(key):
            raise FileNotFoundError(key)
        name = self._name(key)
        # Copying an object onto itself with new metadata is S3's way to refresh its Last-Modified.
        self.client.copy_object(Bucket=self.bucket, Key=name, CopySource={"Bucket": self.bucket, "Key": name},
                                Metadata={"touched": dt.datetime.now(dt.UTC).isoformat()},
                                MetadataDirective="REPLACE")

    def list(self, prefix: str) -> Iterator[tuple[str, dt.datetime]]:
        start = f"{self.prefix}/" if self.prefix else ""
        pages = self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=start + prefix)
        for page in pages:
            for obj in page.get("Contents", []):
                yield obj["Key"][len(start):], obj["LastModified"]


_cache: dict[tuple[str, str], Storage] = {}
_lock = threading.Lock()


def for_settings(settings: Settings) -> Storage:
    """The storage STORAGE_URL names (one per process and URL: the S3 client is built once and thread-safe)."""
    key = (settings.storage_url, str(settings.instance_path))
    with _lock:
        if key not in _cache:
            _cache[key] = _build(settings)
        return _cache[key]


def _build(settings: Settings) -> Storage:
    url = settings.storage_url
    if not url:
        return LocalStorage(settings.instance_path)
    scheme = urlsplit(url).scheme
    if scheme == "file":
        return LocalStorage(Path(unquote(urlsplit(url).path)))
    if scheme == "s3":
        return S3Storage(url)
    raise ConfigError(f"STORAGE_URL must start with file:// or s3://, got {url!r}")


def as_storage(where: Storage | Path | str) -> Storage:
    """A Storage, or a local one over a directory (scripts and benchmarks pass a path)."""
    return where if isinstance(where, Storage) else LocalStorage(Path(where))


__all__ = ["LocalStorage", "S3Storage", "Storage", "as_storage", "check_key", "for_settings"]
