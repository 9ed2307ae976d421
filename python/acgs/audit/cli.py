"""``acgs audit ...``: verify the stored log, sign a checkpoint, export a segment, and verify an
exported segment offline. The first three open the log the audit service's settings describe
(``ACGS_DATA_DIR``, ``ACGS_AUDIT_DATABASE_URL``, ``ACGS_AUDIT_SIGNING_KEY``); ``verify-export``
needs only the file."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

from acgs.audit.export import verify_export
from acgs.audit.log import AuditLog


def _open(args: argparse.Namespace) -> AuditLog:
    from acgs.services.audit.app import open_log
    from acgs.services.audit.settings import AuditSettings

    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    return open_log(AuditSettings.from_env(**overrides))


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
    from acgs.services.audit.settings import AuditSettings

    overrides: dict[str, Any] = {}
    if args.data_dir is not None:
        overrides["data_dir"] = args.data_dir
    if args.database_url is not None:
        overrides["database_url"] = args.database_url
    settings = AuditSettings.from_env(**overrides)
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


def add_audit_commands(sub: Any) -> None:
    audit = sub.add_parser("audit", help="verify, checkpoint and export the audit log")
    cmds = audit.add_subparsers(dest="audit_command", required=True)

    def store_options(p: argparse.ArgumentParser) -> None:
        p.add_argument("--data-dir", type=Path, help="ACGS data directory (default: ACGS_DATA_DIR or .acgs-data)")
        p.add_argument("--database-url", help="sqlite:///path or postgresql://... (default: ACGS_AUDIT_DATABASE_URL)")

    v = cmds.add_parser("verify", help="re-hash every stored event and check the chain and the latest checkpoint")
    store_options(v)
    v.add_argument("--from", dest="from_index", type=int, default=0)
    v.add_argument("--to", dest="to_index", type=int)
    v.add_argument("--progress", action="store_true", help="show the progress line even when stderr is not a terminal")
    v.set_defaults(func=lambda a: asyncio.run(_verify(a)))

    c = cmds.add_parser("checkpoint", help="sign a checkpoint of the whole log (if it grew) and print it")
    store_options(c)
    c.add_argument("--no-sign", action="store_true", help="print the latest checkpoint without signing a new one")
    c.add_argument("--json", action="store_true")
    c.set_defaults(func=lambda a: asyncio.run(_checkpoint(a)))

    e = cmds.add_parser("export", help="write events [from, to) as a self-contained, offline-verifiable segment")
    store_options(e)
    e.add_argument("--from", dest="from_index", type=int, default=0)
    e.add_argument("--to", dest="to_index", type=int, help="end, exclusive (default: the whole log)")
    e.add_argument("file", type=Path, help="output file, or - for stdout")
    e.set_defaults(func=lambda a: asyncio.run(_export(a)))

    a = cmds.add_parser("archive", help="seal complete segments and write them to the archive (directory or s3://)")
    store_options(a)
    a.add_argument("--segment-size", type=int, help="events per segment (default: ACGS_AUDIT_SEGMENT_SIZE)")
    a.add_argument("--to", help="a directory or s3://bucket/prefix (default: ACGS_AUDIT_ARCHIVE or <data_dir>/archive)")
    a.add_argument("--endpoint", help="S3-compatible endpoint URL (default: ACGS_AUDIT_ARCHIVE_ENDPOINT)")
    a.set_defaults(func=lambda a: asyncio.run(_archive(a)))

    x = cmds.add_parser("verify-export", help="verify an exported segment offline (no database)")
    x.add_argument("file", help="the export file (JSON or gzipped JSON, as archived), or - for stdin")
    x.add_argument("--key", help="the log's verifier key, or @file holding it (default: the key in the file)")
    x.set_defaults(func=_verify_export)
