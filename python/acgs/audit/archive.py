"""Sealed segments of the audit log, archived as gzipped exports.

Every ``segment_size`` events form a segment ``[k*N, (k+1)*N)``; once the log holds all of
them, the segment is exported (``AuditLog.export``: payloads, hashes, a signed checkpoint and
the range proof) and written, gzip-compressed, to an archive: a local directory (the default)
or an S3 bucket through boto3 (AWS or any S3-compatible endpoint). An archived segment is
verified like any export: ``acgs audit verify-export <segment>.json.gz``. Segments are named by
their range, so sealing is idempotent and resumes where the archive ends.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import re
from pathlib import Path
from typing import Any, Protocol

from acgs.audit.log import AuditLog

log = logging.getLogger("acgs.audit")

_NAME = re.compile(r"^segment-(\d{12})-(\d{12})\.json\.gz$")


def segment_name(start: int, end: int) -> str:
    return f"segment-{start:012d}-{end:012d}.json.gz"


def encode_segment(doc: dict[str, Any]) -> bytes:
    # mtime=0: the same segment always compresses to the same bytes.
    return gzip.compress(json.dumps(doc, ensure_ascii=False, separators=(",", ":")).encode("utf-8"), mtime=0)


def decode_segment(data: bytes) -> Any:
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    return json.loads(data)


class ArchiveTarget(Protocol):
    """Where sealed segments are kept."""

    def names(self) -> list[str]:
        """Names of the segments already archived."""
        ...

    def put(self, name: str, data: bytes) -> None:
        """Stores a segment durably (replacing one of the same name is harmless: same bytes)."""

    def get(self, name: str) -> bytes: ...

    def describe(self) -> str: ...


class LocalArchive:
    """Segments as files in a directory, each written to a temporary name, synced, then renamed."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def names(self) -> list[str]:
        if not self.directory.is_dir():
            return []
        return sorted(p.name for p in self.directory.iterdir() if _NAME.match(p.name))

    def put(self, name: str, data: bytes) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self.directory / f".{name}.tmp"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.directory / name)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    def get(self, name: str) -> bytes:
        return (self.directory / name).read_bytes()

    def describe(self) -> str:
        return str(self.directory)


class S3Archive:
    """Segments as objects under ``prefix`` in ``bucket``. ``endpoint_url`` points boto3 at any
    S3-compatible service; credentials come from boto3's usual chain (environment, files)."""

    def __init__(self, bucket: str, prefix: str = "acgs-audit/", *, endpoint_url: str | None = None, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix if not prefix or prefix.endswith("/") else prefix + "/"
        if client is None:
            import boto3

            client = boto3.client("s3", endpoint_url=endpoint_url)
        self.client = client

    def names(self) -> list[str]:
        out: list[str] = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix):
            for obj in page.get("Contents", []):
                name = str(obj["Key"])[len(self.prefix) :]
                if _NAME.match(name):
                    out.append(name)
        return sorted(out)

    def put(self, name: str, data: bytes) -> None:
        self.client.put_object(
            Bucket=self.bucket, Key=self.prefix + name, Body=data, ContentType="application/json", ContentEncoding="gzip"
        )

    def get(self, name: str) -> bytes:
        body = self.client.get_object(Bucket=self.bucket, Key=self.prefix + name)["Body"]
        data: bytes = body.read()
        return data

    def describe(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"


def target_from_url(url: str, *, endpoint_url: str | None = None) -> ArchiveTarget:
    """``s3://bucket/prefix`` or a directory path (``file://`` optional)."""
    if url.startswith("s3://"):
        bucket, _, prefix = url[len("s3://") :].partition("/")
        return S3Archive(bucket, prefix or "acgs-audit/", endpoint_url=endpoint_url)
    return LocalArchive(Path(url.removeprefix("file://")))


class Archiver:
    """Seals every complete segment of ``segment_size`` events not yet in the archive."""

    def __init__(self, audit_log: AuditLog, target: ArchiveTarget, segment_size: int) -> None:
        if segment_size < 1:
            raise ValueError("segment_size must be at least 1")
        self.log = audit_log
        self.target = target
        self.segment_size = segment_size
        self.sealed = 0

    def archived_end(self) -> int:
        """The end of the contiguous run of archived segments from index 0."""
        end = 0
        for name in self.target.names():
            m = _NAME.match(name)
            if m and int(m.group(1)) == end and int(m.group(2)) == end + self.segment_size:
                end = int(m.group(2))
        return end

    async def seal(self) -> list[str]:
        """Archives the complete segments past the archive's end; returns their names."""
        import asyncio

        size = await self.log.store.size()
        start = await asyncio.to_thread(self.archived_end)
        made: list[str] = []
        while start + self.segment_size <= size:
            end = start + self.segment_size
            doc = await self.log.export(start, end)
            name = segment_name(start, end)
            await asyncio.to_thread(self.target.put, name, encode_segment(doc))
            log.info("archived audit segment [%d, %d) to %s", start, end, self.target.describe())
            made.append(name)
            self.sealed += 1
            start = end
        return made
