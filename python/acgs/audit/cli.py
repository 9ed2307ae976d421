"""The work behind ``acgs audit ...`` (the click commands live in ``acgs.cli``): verify the stored
log, sign a checkpoint, export a segment, and verify an exported segment offline. The first
three open the log the configuration's audit section describes (data directory, database URL,
``ACGS_AUDIT_SIGNING_KEY``); ``verify-export`` needs only the file."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from acgs.audit.export import verify_export
from acgs.audit.log import AuditLog

if TYPE_CHECKING:
    from acgs.services.audit.settings import AuditSettings


def _settings(args: argparse.Namespace) -> AuditSettings:
    """The audit settings of the configuration, with the command's store options over them."""
    from acgs.config import load_config

    overrides = {"data_dir": args.data_dir, "database_url": args.database_url}
    settings: AuditSettings = load_config(args.config, overrides={"audit": overrides}).audit
    return settings


def _open(args: argparse.Namespace) -> AuditLog:
    from acgs.services.audit.app import open_log

    return open_log(_settings(args))


class _Progress:
    """One self-overwriting stderr line, at most a few times a second, only on a terminal or
    when asked."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.began = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (now - self.last < 0.2 and done < total):
            return
        self.last = now
        rate = done / max(now - self.began, 1e-9)
        pct = 100.0 * done / total if total else 100.0
        print(f"\rverifying: {done:,}/{total:,} events ({pct:5.1f}%), {rate:,.0f} events/s", end="", file=sys.stderr)

    def finish(self) -> None:
        if self.enabled and self.last:
            print(file=sys.stderr)


async def _verify(args: argparse.Namespace) -> int:
    log = _open(args)
    await log.open()
    try:
        progress = _Progress(args.progress or sys.stderr.isatty())
        report = await log.verify(args.from_index, args.to_index, progress=progress)
        progress.finish()
    finally:
        await log.close()
    print(json.dumps(report.as_dict(), indent=2))
    if not report.ok:
        print(f"acgs: audit log does not verify at index {report.first_bad_index}: {report.reason}: {report.detail}", file=sys.stderr)
        return 1
    return 0


async def _checkpoint(args: argparse.Namespace) -> int:
    log = _open(args)
    await log.open()
    try:
        cp = await log.checkpoint(refresh=not args.no_sign)
    finally:
        await log.close()
    if cp is None:
        print("acgs: the audit log is empty; no checkpoint", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps({"origin": log.origin, "size": cp.size, "root": cp.root.hex(), "checkpoint": cp.note, "verifier_key": log.verifier_key}, indent=2))
    else:
        sys.stdout.write(cp.note)
        print(f"verifier key: {log.verifier_key}", file=sys.stderr)
    return 0


async def _export(args: argparse.Namespace) -> int:
    log = _open(args)
    await log.open()
    try:
        doc = await log.export(args.from_index, args.to_index)
    finally:
        await log.close()
    data = json.dumps(doc, ensure_ascii=False, indent=1).encode("utf-8")
    if str(args.file) == "-":
        sys.stdout.buffer.write(data + b"\n")
    else:
        tmp = args.file.with_name(args.file.name + ".tmp")
        tmp.write_bytes(data + b"\n")
        tmp.replace(args.file)
        size = doc["checkpoint"].splitlines()[1]
        print(f"exported events [{doc['start']}, {doc['end']}) with a checkpoint of size {size} to {args.file}", file=sys.stderr)
    return 0


def _verify_export(args: argparse.Namespace) -> int:
    from acgs.audit.archive import decode_segment

    try:
        raw = sys.stdin.buffer.read() if str(args.file) == "-" else Path(args.file).read_bytes()
        doc = decode_segment(raw)
    except (OSError, ValueError, EOFError) as exc:
        print(f"acgs: cannot read {args.file}: {exc}", file=sys.stderr)
        return 2
    key = args.key
    if key is not None and key.startswith("@"):
        key = Path(key[1:]).read_text().strip()
    report = verify_export(doc, key)
    print(json.dumps(report.as_dict(), indent=2))
    if report.ok and report.key_from_file:
        print("acgs: verified with the key inside the file; pass --key with the log's published verifier key "
              "to also check who signed", file=sys.stderr)
    return 0 if report.ok else 1


async def _archive(args: argparse.Namespace) -> int:
    from acgs.audit.archive import Archiver, target_from_url

    settings = _settings(args)
    size = args.segment_size or settings.segment_size
    if size <= 0:
        print("acgs: archiving is off (segment size 0); pass --segment-size", file=sys.stderr)
        return 2
    target = target_from_url(args.to or settings.resolved_archive(), endpoint_url=args.endpoint or settings.archive_endpoint)
    log = _open(args)
    await log.open()
    try:
        made = await Archiver(log, target, size).seal()
    finally:
        await log.close()
    print(json.dumps({"archive": target.describe(), "sealed": made}, indent=2))
    return 0
