"""Adds OPA's plan (``opa build -t plan``) to a Wasm bundle as ``/plan.json``, beside
``/policy.wasm``: the one place ``acgs bundle build`` and ``policies/build.sh`` (``make
bundles``) do it. The archive is rewritten with fixed metadata (mode, mtime, gzip header), so the
same sources give the same bytes.

Standard library only, so ``policies/build.sh`` can run this file as a script before the
extension is built: ``python3 python/acgs/bundle_plan.py BUNDLE PLAN_BUNDLE``.
"""

from __future__ import annotations

import gzip
import io
import sys
import tarfile
from pathlib import Path


class PlanMissing(ValueError):
    """The plan bundle holds no ``/plan.json``."""


def add_plan(bundle: Path, plan_bundle: Path) -> None:
    """Rewrites ``bundle`` (a ``.tar.gz``) with ``/plan.json`` taken from ``plan_bundle``."""
    with tarfile.open(plan_bundle, "r:gz") as t:
        member = next((m for m in t.getmembers() if m.name.lstrip("/") == "plan.json"), None)
        extracted = t.extractfile(member) if member is not None else None
        if extracted is None:
            raise PlanMissing(f"{plan_bundle} holds no /plan.json")
        plan_json = extracted.read()
    members: list[tuple[str, bytes]] = []
    with tarfile.open(bundle, "r:gz") as t:
        for m in t.getmembers():
            f = t.extractfile(m) if m.isfile() and m.name.lstrip("/") != "plan.json" else None
            if f is not None:
                members.append((m.name, f.read()))
    members.append(("/plan.json", plan_json))
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.GNU_FORMAT) as t:
        for name, content in members:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(content), 0o600, 0
            t.addfile(info, io.BytesIO(content))
    Path(bundle).write_bytes(gzip.compress(raw.getvalue(), mtime=0))


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: bundle_plan.py BUNDLE PLAN_BUNDLE")
    add_plan(Path(sys.argv[1]), Path(sys.argv[2]))
