"""The work behind ``acgs audit ...`` (the click commands live in ``acgs.cli``): verify the stored
log, sign a checkpoint, export a segment, and verify an exported segment offline. The first
three open the log the configuration's audit section describes (data directory, database URL,
``ACGS_AUDIT_SIGNING_KEY``); ``verify-export`` needs only the file and the log's verifier key.

``verify`` holds the log to a key pinned outside the database (``--key FILE``, a verifier key or
the signing key; default the service's key under the data directory), optionally to a published
key id (``--key-id``), and to the witnessed checkpoint kept beside the key (``--witness``)."""

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
    from acgs.audit import keys
    from acgs.audit.log import verify_log
    from acgs.audit.store import open_store
    from acgs.errors import SigningKeyError

    settings = _settings(args)
    try:
        verifier, source = keys.pinned_verifier(getattr(args, "key", None), settings.data_dir)
        wanted = getattr(args, "key_id", None)
        if wanted and keys.key_id(verifier) != wanted.strip().lower():
            print(f"acgs: the key in {source} has id {keys.key_id(verifier)}, not the published {wanted}", file=sys.stderr)
            return 2
    except SigningKeyError as exc:
        print(f"acgs: {exc}", file=sys.stderr)
        return 2
    witness = getattr(args, "witness", None)
    witness = Path(witness) if witness else settings.data_dir / keys.WITNESS_FILE
    store = open_store(settings.resolved_database_url())
    await store.open()
    try:
        progress = _Progress(getattr(args, "progress", False) or sys.stderr.isatty())
        report = await verify_log(
            store, args.from_index, args.to_index, verifier_key=verifier, witness=witness, progress=progress
        )
        progress.finish()
    finally:
        await store.close()
    out = report.as_dict()
    out["verifier_key"] = verifier
    print(json.dumps(out, indent=2))
    if not report.ok:
        if report.first_bad_index is not None:
            print(f"acgs: audit log does not verify at index {report.first_bad_index}: {report.reason}: {report.detail}", file=sys.stderr)
        elif report.checkpoint_error is not None:
            print(f"acgs: audit log checkpoints do not verify: {report.checkpoint_error}", file=sys.stderr)
        else:
            print(f"acgs: audit log does not verify: {report.reason}: {report.detail}", file=sys.stderr)
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
    if not key:
        # The key inside the file is whatever whoever wrote the file chose: it proves nothing.
        print("acgs: verify-export needs the log's published verifier key: pass --key KEY or --key @FILE "
              "(GET /audit/key, or `acgs audit checkpoint --json`)", file=sys.stderr)
        return 2
    try:
        if key.startswith("@"):
            from acgs.audit.keys import verifier_from_text

            key = verifier_from_text(Path(key[1:]).read_text())
    except (OSError, ValueError) as exc:
        print(f"acgs: cannot read the key {args.key}: {exc}", file=sys.stderr)
        return 2
    report = verify_export(doc, key)
    print(json.dumps(report.as_dict(), indent=2))
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
