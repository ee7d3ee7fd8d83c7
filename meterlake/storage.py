"""The warehouse's own files (landing batches, manifest entries, checkpoint state) on the
local filesystem or in an S3 bucket, behind one small interface.

Spark reaches the same objects through its own file systems (local or S3A); this is for
what meterlake writes itself, with the guarantees landing depends on:

- ``put_file`` makes an object appear whole or not at all (local: fsync, rename, fsync
  of the directory; S3: one PUT, durable when it answers 200);
- ``create`` is exclusive: of two writers of the same key exactly one wins (local: a
  hard link; S3: a conditional PUT with ``If-None-Match: *``), which is how landing
  makes "these bytes were already loaded" a single check.

Keys are ``/``-separated paths relative to the warehouse. Credentials for S3 come from
the standard AWS chain (environment, profile, instance role), never from meterlake.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Protocol
from urllib.parse import urlparse

if TYPE_CHECKING:
    from meterlake.config import Settings


class Storage(Protocol):
    def put_file(self, local: Path, key: str) -> None: ...
    def write(self, key: str, data: bytes) -> None: ...
    def create(self, key: str, data: bytes) -> bool: ...
    def read(self, key: str) -> bytes | None: ...
    def sha256(self, key: str) -> str | None: ...
    def download(self, key: str, local: Path) -> bool: ...
    def keys(self, prefix: str) -> Iterator[str]: ...
    def delete(self, key: str) -> None: ...
    def delete_tree(self, prefix: str) -> None: ...
    def spool_dir(self) -> Path: ...


_CHUNK = 1 << 20


def _closing(handle, chunks: Iterator[bytes]) -> Iterator[bytes]:
    with handle:
        yield from chunks


def _digest(chunks: Iterator[bytes] | None) -> str | None:
    if chunks is None:
        return None
    digest = hashlib.sha256()
    for chunk in chunks:
        digest.update(chunk)
    return digest.hexdigest()


def _save(chunks: Iterator[bytes] | None, local: Path) -> bool:
    """Write ``chunks`` to ``local``; False when there are none (no such object)."""
    if chunks is None:
        return False
    with local.open("wb") as handle:
        for chunk in chunks:
            handle.write(chunk)
    return True


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True)
class LocalStorage:
    root: Path
    spool: Path  # inside root: the same file system, so the final rename is atomic

    def _path(self, key: str) -> Path:
        path = self.root / key
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    def spool_dir(self) -> Path:
        """Where partial writes wait until they are whole."""
        self.spool.mkdir(parents=True, exist_ok=True)
        return self.spool

    def put_file(self, local: Path, key: str) -> None:
        target = self._path(key)
        with local.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(local, target)
        _fsync_dir(target.parent)

    def _spooled(self, data: bytes) -> Path:
        with tempfile.NamedTemporaryFile(dir=self.spool_dir(), delete=False) as tmp:
            tmp.write(data)
        return Path(tmp.name)

    def write(self, key: str, data: bytes) -> None:
        """Replace the object whole."""
        self.put_file(self._spooled(data), key)

    def create(self, key: str, data: bytes) -> bool:
        target = self._path(key)
        tmp = self._spooled(data)
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        try:
            os.link(tmp, target)
        except FileExistsError:
            return False
        finally:
            tmp.unlink()
        _fsync_dir(target.parent)
        return True

    def read(self, key: str) -> bytes | None:
        path = self.root / key
        return path.read_bytes() if path.is_file() else None

    def _chunks(self, key: str) -> Iterator[bytes] | None:
        path = self.root / key
        if not path.is_file():
            return None
        handle = path.open("rb")
        return _closing(handle, iter(lambda: handle.read(_CHUNK), b""))

    def sha256(self, key: str) -> str | None:
        """The object's sha256 (hex), read in chunks; None when it does not exist."""
        return _digest(self._chunks(key))

    def download(self, key: str, local: Path) -> bool:
        """Copy the object to ``local``; False when it does not exist."""
        return _save(self._chunks(key), local)

    def keys(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix
        if base.is_dir():
            for path in sorted(base.rglob("*")):
                if path.is_file():
                    yield path.relative_to(self.root).as_posix()

    def delete(self, key: str) -> None:
        (self.root / key).unlink(missing_ok=True)

    def delete_tree(self, prefix: str) -> None:
        shutil.rmtree(self.root / prefix, ignore_errors=True)


@dataclass(frozen=True)
class S3Storage:
    bucket: str
    prefix: str
    endpoint: str | None
    region: str
    spool: Path

    @cached_property
    def _client(self):  # one client per storage object, not per request
        import boto3
        from botocore.config import Config

        config = Config(s3={"addressing_style": "path"}, retries={"mode": "standard"})
        return boto3.client(
            "s3", endpoint_url=self.endpoint, region_name=self.region, config=config
        )

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def spool_dir(self) -> Path:
        self.spool.mkdir(parents=True, exist_ok=True)
        return self.spool

    def put_file(self, local: Path, key: str) -> None:
        self._client.upload_file(str(local), self.bucket, self._key(key))
        local.unlink()

    def write(self, key: str, data: bytes) -> None:
        self._client.put_object(Bucket=self.bucket, Key=self._key(key), Body=data)

    def create(self, key: str, data: bytes) -> bool:
        from botocore.exceptions import ClientError

        try:
            self._client.put_object(
                Bucket=self.bucket, Key=self._key(key), Body=data, IfNoneMatch="*"
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("PreconditionFailed", "412"):
                return False
            raise
        return True

    def _get(self, key: str):
        """The GET answer for ``key``, or None when there is no such object."""
        from botocore.exceptions import ClientError

        try:
            return self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None
            raise

    def read(self, key: str) -> bytes | None:
        answer = self._get(key)
        return answer["Body"].read() if answer is not None else None

    def _chunks(self, key: str) -> Iterator[bytes] | None:
        answer = self._get(key)
        return answer["Body"].iter_chunks(_CHUNK) if answer is not None else None

    def sha256(self, key: str) -> str | None:
        return _digest(self._chunks(key))

    def download(self, key: str, local: Path) -> bool:
        return _save(self._chunks(key), local)

    def keys(self, prefix: str) -> Iterator[str]:
        pages = self._client.get_paginator("list_objects_v2").paginate(
            Bucket=self.bucket, Prefix=self._key(prefix)
        )
        skip = len(self._key(""))
        for page in pages:
            for item in page.get("Contents", ()):
                yield item["Key"][skip:]

    def delete(self, key: str) -> None:
        self._client.delete_object(Bucket=self.bucket, Key=self._key(key))

    def delete_tree(self, prefix: str) -> None:
        for key in list(self.keys(prefix.rstrip("/") + "/")):
            self.delete(key)


def storage_for(settings: Settings, spool: str = "landing/.tmp") -> Storage:
    """The warehouse's storage: S3 for ``s3a://``/``s3://`` warehouses, else local.
    ``spool`` is the warehouse-relative folder partial local writes wait in (S3 writes
    spool in the machine's temporary folder)."""
    if not settings.is_object_store:
        root = Path(settings.warehouse)
        return LocalStorage(root, root / spool)
    url = urlparse(settings.warehouse)
    return S3Storage(
        bucket=url.netloc,
        prefix=url.path.strip("/"),
        endpoint=settings.s3.endpoint,
        region=settings.s3.region,
        spool=Path(tempfile.gettempdir()) / "meterlake-spool",
    )


def s3_client(endpoint: str | None, region: str = "us-east-1"):
    """A boto3 S3 client configured like the storage's (path-style, standard retries)."""
    return S3Storage("", "", endpoint, region, Path(tempfile.gettempdir()))._client


def create_bucket(bucket: str, endpoint: str | None, region: str = "us-east-1") -> bool:
    """Create ``bucket`` unless it exists (infra/s3.sh); True when this call made it."""
    from botocore.exceptions import ClientError

    client = s3_client(endpoint, region)
    try:
        client.create_bucket(Bucket=bucket)
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            return False
        raise
    return True


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m meterlake.storage")
    parser.add_argument("--create-bucket", required=True, metavar="NAME")
    parser.add_argument("--endpoint", help="S3 endpoint URL (default: AWS)")
    args = parser.parse_args(argv)
    made = create_bucket(args.create_bucket, args.endpoint)
    print(f"bucket {args.create_bucket}: {'created' if made else 'exists'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
