"""Where snapshot files live: a local folder or S3, behind one small interface.

Writes stream (S3 multipart above one part), so memory is bounded by a part, not a file.
Conditional writes (create-only, or replace-if-unchanged) guard the state file and the run lock; on
both stores they are atomic: of two racing writers with the same precondition, exactly one wins.
Every S3 object gets the content type its key's extension names, so a browser (or the S3 console)
opens a run's HTML page as a page and its CSV and JSON files as text.
"""

from __future__ import annotations

import fcntl
import hashlib
import io
import os
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, cast
from urllib.parse import unquote, urlparse

from .model import SnapshotError

CONTENT_TYPES = {
    ".json": "application/json",
    ".csv": "text/csv; charset=utf-8",
    ".html": "text/html; charset=utf-8",
}


def content_type(key: str) -> str:
    return next((t for ext, t in CONTENT_TYPES.items() if key.endswith(ext)), "application/octet-stream")


class PreconditionFailed(SnapshotError):
    """A conditional write lost a race: the object exists, or changed since it was read."""


@dataclass(frozen=True)
class Blob:
    data: bytes
    etag: str
    modified: float  # when the object was last written (epoch seconds)


class BlobStore(Protocol):
    def describe(self, key: str) -> str: ...

    def open_write(self, key: str) -> AbstractContextManager[IO[bytes]]: ...

    def open_read(self, key: str) -> IO[bytes]: ...

    def get(self, key: str) -> Blob | None: ...

    def exists(self, key: str) -> bool: ...

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        """Write the whole object; returns its new etag. Raises PreconditionFailed on a lost race."""
        ...

    def list_dirs(self, prefix: str) -> list[str]:
        """Names directly below prefix (which ends with '/')."""
        ...

    def list_files(self, prefix: str) -> list[str]:
        """Names of the objects directly below prefix (which ends with '/'), sorted."""
        ...

    def delete(self, key: str) -> None: ...


def open_blob_store(uri: str, *, s3_client: Any = None) -> BlobStore:
    """`s3://bucket/prefix`, `file:///abs/dir` or a plain path."""
    parsed = urlparse(uri)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SnapshotError(f"SNAPSHOT_URI {uri!r} names no bucket")
        return S3BlobStore(parsed.netloc, parsed.path.strip("/"), client=s3_client)
    if parsed.scheme == "file":
        return LocalBlobStore(Path(unquote(parsed.path)))
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # plain path (or a Windows drive)
        return LocalBlobStore(Path(uri))
    raise SnapshotError(f"SNAPSHOT_URI {uri!r}: expected s3://bucket/prefix, file:///dir or a path")


class LocalBlobStore:
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, key: str) -> Path:
        return self.root / key

    def describe(self, key: str) -> str:
        return str(self._path(key))

    def open_write(self, key: str) -> AbstractContextManager[IO[bytes]]:
        return _AtomicLocalFile(self._path(key))

    def open_read(self, key: str) -> IO[bytes]:
        try:
            return self._path(key).open("rb")
        except FileNotFoundError as exc:
            raise SnapshotError(f"missing {self.describe(key)}") from exc

    def get(self, key: str) -> Blob | None:
        try:
            with self._path(key).open("rb") as fh:
                data, modified = fh.read(), os.fstat(fh.fileno()).st_mtime
        except FileNotFoundError:
            return None
        return Blob(data, _content_etag(data), modified)

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    @staticmethod
    def _current_etag(path: Path) -> str | None:
        try:
            return _content_etag(path.read_bytes())
        except FileNotFoundError:
            return None

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        path = self._path(key)
        if not if_none_match and if_match is None:
            with _AtomicLocalFile(path) as fh:
                fh.write(data)
            return _content_etag(data)
        # The check and the rename are one step for every conditional writer, threads and processes
        # alike. A key is written either always conditionally (state, lock) or never (progress).
        with _directory_locked(path.parent):
            if if_none_match and path.exists():
                raise PreconditionFailed(f"{self.describe(key)} already exists")
            if if_match is not None and self._current_etag(path) != if_match:
                raise PreconditionFailed(f"{self.describe(key)} changed since it was read")
            with _AtomicLocalFile(path) as fh:
                fh.write(data)
        return _content_etag(data)

    def list_dirs(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_dir())

    def list_files(self, prefix: str) -> list[str]:
        base = self._path(prefix)
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if p.is_file() and not p.name.startswith("."))

    def delete(self, key: str) -> None:
        self._path(key).unlink(missing_ok=True)


def _content_etag(data: bytes) -> str:
    """The local store's etag: a digest of the bytes, so any write that changes them changes it (a
    modification time and size would not: two same-size writes within one clock tick look alike)."""
    return hashlib.sha256(data).hexdigest()


@contextmanager
def _directory_locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive flock on the directory itself (no lock files to leave behind); it is released
    when the descriptor closes, also when the process dies."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


class _AtomicLocalFile(AbstractContextManager[IO[bytes]]):
    """Write to a temporary file beside the target and rename on success: no torn files."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> IO[bytes]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.fh = os.fdopen(fd, "wb")
        return self.fh

    def __exit__(self, exc_type: object, *_: object) -> None:
        self.fh.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)


class S3BlobStore:
    PART_SIZE = 8 * 1024 * 1024

    def __init__(self, bucket: str, prefix: str, *, client: Any = None) -> None:
        if client is None:
            import boto3  # boto3 honours AWS_ENDPOINT_URL for a local S3
            from botocore.config import Config as BotoConfig

            # Bounded: an unreachable endpoint fails in seconds, not after botocore's 60 s connects.
            timeouts = BotoConfig(
                connect_timeout=10, read_timeout=60, retries={"mode": "standard", "max_attempts": 3}
            )
            client = boto3.client("s3", config=timeouts)
        self.client = client
        self.bucket = bucket
        self.prefix = f"{prefix}/" if prefix else ""

    def _key(self, key: str) -> str:
        return self.prefix + key

    def describe(self, key: str) -> str:
        return f"s3://{self.bucket}/{self._key(key)}"

    @contextmanager
    def open_write(self, key: str) -> Iterator[IO[bytes]]:
        writer = _S3StreamingWriter(self.client, self.bucket, self._key(key), self.PART_SIZE)
        try:
            yield cast(IO[bytes], writer)
        except BaseException:
            writer.abort()
            raise
        writer.finish()

    def open_read(self, key: str) -> IO[bytes]:
        try:
            body = self.client.get_object(Bucket=self.bucket, Key=self._key(key))["Body"]
        except self.client.exceptions.NoSuchKey as exc:
            raise SnapshotError(f"missing {self.describe(key)}") from exc
        return io.BufferedReader(_StreamingBodyRaw(body), buffer_size=1024 * 1024)

    def get(self, key: str) -> Blob | None:
        try:
            obj = self.client.get_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.NoSuchKey:
            return None
        return Blob(obj["Body"].read(), obj["ETag"], obj["LastModified"].timestamp())

    def exists(self, key: str) -> bool:
        try:
            self.client.head_object(Bucket=self.bucket, Key=self._key(key))
        except self.client.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        return True

    def put(self, key: str, data: bytes, *, if_none_match: bool = False, if_match: str | None = None) -> str:
        kwargs: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": data,
            "ContentType": content_type(key),
        }
        if if_none_match:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = if_match
        try:
            return str(self.client.put_object(**kwargs)["ETag"])
        except self.client.exceptions.ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in ("PreconditionFailed", "412", "ConditionalRequestConflict"):
                raise PreconditionFailed(f"{self.describe(key)}: conditional write refused") from exc
            raise

    def list_dirs(self, prefix: str) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            for common in page.get("CommonPrefixes", []):
                names.append(common["Prefix"][len(full) :].rstrip("/"))
        return sorted(names)

    def list_files(self, prefix: str) -> list[str]:
        names: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        full = self._key(prefix)
        for page in paginator.paginate(Bucket=self.bucket, Prefix=full, Delimiter="/"):
            names += [item["Key"][len(full) :] for item in page.get("Contents", [])]
        return sorted(names)

    def delete(self, key: str) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self._key(key))


class _StreamingBodyRaw(io.RawIOBase):
    def __init__(self, body: Any) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        chunk = self.body.read(len(buffer))
        buffer[: len(chunk)] = chunk
        return len(chunk)

    def close(self) -> None:
        self.body.close()
        super().close()


class _S3StreamingWriter(io.RawIOBase):
    """Buffers one part at a time; a file below one part is a single PUT, larger ones multipart."""

    def __init__(self, client: Any, bucket: str, key: str, part_size: int) -> None:
        self.client, self.bucket, self.key, self.part_size = client, bucket, key, part_size
        self.buffer = bytearray()
        self.upload_id: str | None = None
        self.parts: list[dict[str, Any]] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.buffer += data
        while len(self.buffer) >= self.part_size:
            self._upload_part(bytes(self.buffer[: self.part_size]))
            del self.buffer[: self.part_size]
        return len(data)

    def _upload_part(self, chunk: bytes) -> None:
        if self.upload_id is None:
            self.upload_id = self.client.create_multipart_upload(
                Bucket=self.bucket, Key=self.key, ContentType=content_type(self.key)
            )["UploadId"]
        number = len(self.parts) + 1
        response = self.client.upload_part(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, PartNumber=number, Body=chunk
        )
        self.parts.append({"PartNumber": number, "ETag": response["ETag"]})

    def abort(self) -> None:
        if self.upload_id is not None:
            self.client.abort_multipart_upload(Bucket=self.bucket, Key=self.key, UploadId=self.upload_id)

    def finish(self) -> None:
        if self.upload_id is None:
            self.client.put_object(
                Bucket=self.bucket, Key=self.key, Body=bytes(self.buffer), ContentType=content_type(self.key)
            )
            return
        if self.buffer:
            self._upload_part(bytes(self.buffer))
        self.client.complete_multipart_upload(
            Bucket=self.bucket, Key=self.key, UploadId=self.upload_id, MultipartUpload={"Parts": self.parts}
        )
