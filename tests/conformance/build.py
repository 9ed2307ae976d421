"""Compiling cases to Wasm bundles with the pinned ``opa`` CLI, with a cache.

Each plan is keyed by a sha256 over the OPA version and everything that goes
into the build (modules, data, entrypoints). Failures are cached too, so a
second run over an unchanged suite starts no ``opa`` process at all.

With ``target="plan"`` a bundle also carries ``/plan.json`` (``opa build -t
plan`` of the same entrypoint), for the engine's plan evaluator; those bundles
are cached beside the Wasm ones under their own keys.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import tarfile
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable

from . import OPA_VERSION
from .cases import Plan, SetupError

# Bump when the way plans are built or cached changes meaning.
CACHE_SCHEMA = 1
BUILD_TIMEOUT_S = 300
MAX_JOBS = 2
TARGETS = ("wasm", "plan")


def find_opa() -> str:
    override = os.environ.get("ACGS_OPA")
    if override:
        return override
    found = shutil.which("opa")
    if found:
        return found
    local = Path.home() / ".local" / "bin" / "opa"
    if local.is_file() and os.access(local, os.X_OK):
        return str(local)
    raise SetupError("opa binary not found: set ACGS_OPA or put opa on PATH")


def opa_version(opa: str) -> str:
    try:
        out = subprocess.run(
            [opa, "version"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise SetupError(f"cannot run `{opa} version`: {exc}") from exc
    m = re.search(r"^Version:\s*(\S+)", out, re.MULTILINE)
    if not m:
        raise SetupError(f"unexpected `opa version` output: {out[:200]!r}")
    return m.group(1)


def cache_root() -> Path:
    base = os.environ.get("ACGS_CACHE_DIR")
    root = Path(base).expanduser() if base else Path.home() / ".cache" / "acgs"
    return root / "conformance"


def plan_key(version: str, plan: Plan, target: str = "wasm") -> str:
    def describe(p: Plan | None) -> object:
        if p is None:
            return None
        return {
            "modules": list(p.modules),
            "data": p.data_json,
            "entrypoints": [p.entrypoint],
        }

    material = {
        "schema": CACHE_SCHEMA,
        "opa": version,
        "plan": describe(plan),
        "fallback": describe(plan.fallback),
    }
    if target != "wasm":
        # Wasm keys stay as they were, so existing caches keep their hits.
        material["target"] = target
    blob = json.dumps(material, sort_keys=True, ensure_ascii=False).encode("utf-8")
    return hashlib.sha256(blob).hexdigest()


@dataclass
class CompileResult:
    ok: bool
    kind: str  # which plan produced the bundle: "direct" or "wrapper"
    entrypoint: str
    bundle: Path | None
    error: str | None
    cached: bool


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _run_build(opa: str, plan: Plan, target: str = "wasm") -> tuple[bytes | None, str]:
    """Runs `opa build -t target` for one plan; returns (bundle bytes, error text)."""
    with tempfile.TemporaryDirectory(prefix="acgs-conf-") as work:
        src = Path(work) / "case"
        src.mkdir()
        for i, module in enumerate(plan.modules):
            (src / f"module-{i}.rego").write_text(module, encoding="utf-8")
        if plan.data_json is not None:
            (src / "data.json").write_text(plan.data_json, encoding="utf-8")
        # Relative paths keep the temporary directory out of the bundle and
        # out of error messages.
        cmd = [opa, "build", "-t", target, "-e", plan.entrypoint, "-o", "bundle.tar.gz", "case"]
        try:
            proc = subprocess.run(
                cmd, cwd=work, capture_output=True, text=True, timeout=BUILD_TIMEOUT_S
            )
        except subprocess.TimeoutExpired:
            return None, f"opa build timed out after {BUILD_TIMEOUT_S}s"
        if proc.returncode != 0:
            return None, (proc.stderr or proc.stdout).strip() or f"opa build exit {proc.returncode}"
        return (Path(work) / "bundle.tar.gz").read_bytes(), ""


_NOT_A_RULE = "does not refer to a rule or policy decision"


def _with_plan(wasm_bundle: bytes, plan_bundle: bytes) -> bytes:
    """The Wasm bundle with ``/plan.json`` from the plan bundle added."""
    with tarfile.open(fileobj=io.BytesIO(plan_bundle), mode="r:gz") as t:
        member = next((m for m in t.getmembers() if m.name.lstrip("/") == "plan.json"), None)
        extracted = t.extractfile(member) if member is not None else None
        if extracted is None:
            raise ValueError("the plan bundle holds no /plan.json")
        plan_json = extracted.read()
    out = io.BytesIO()
    with tarfile.open(fileobj=io.BytesIO(wasm_bundle), mode="r:gz") as src, tarfile.open(
        fileobj=out, mode="w:gz"
    ) as dst:
        for m in src.getmembers():
            f = src.extractfile(m) if m.isfile() and m.name.lstrip("/") != "plan.json" else None
            if f is not None:
                dst.addfile(m, f)
        info = tarfile.TarInfo("/plan.json")
        info.size = len(plan_json)
        dst.addfile(info, io.BytesIO(plan_json))
    return out.getvalue()


class Compiler:
    def __init__(self, opa: str, version: str, root: Path, refresh: bool = False, target: str = "wasm"):
        if target not in TARGETS:
            raise SetupError(f"unknown build target {target!r} (one of {', '.join(TARGETS)})")
        self.target = target
        self.opa = opa
        self.version = version
        self.root = root
        self.refresh = refresh
        if version != OPA_VERSION:
            # Still usable, but results are no longer comparable to the pin.
            print(f"warning: opa reports version {version}, runner is pinned to {OPA_VERSION}")

    def _paths(self, key: str) -> tuple[Path, Path]:
        d = self.root / key[:2]
        return d / f"{key}.json", d / f"{key}.tar.gz"

    def lookup(self, plan: Plan) -> CompileResult | None:
        meta_path, bundle_path = self._paths(plan_key(self.version, plan, self.target))
        if self.refresh:
            return None
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if meta.get("ok") and not bundle_path.is_file():
            return None
        return CompileResult(
            ok=bool(meta.get("ok")),
            kind=str(meta.get("kind")),
            entrypoint=str(meta.get("entrypoint")),
            bundle=bundle_path if meta.get("ok") else None,
            error=meta.get("error"),
            cached=True,
        )

    def compile(self, plan: Plan) -> CompileResult:
        hit = self.lookup(plan)
        if hit is not None:
            return hit
        meta_path, bundle_path = self._paths(plan_key(self.version, plan, self.target))
        if self.target == "plan":
            # The Wasm bundle first (from its own cache when there): the engine needs the Wasm
            # too (entrypoint ids, the reference), so the plan joins it.
            base = Compiler(self.opa, self.version, self.root, self.refresh).compile(plan)
            used = plan.fallback if base.kind != plan.kind and plan.fallback is not None else plan
            bundle = base.bundle.read_bytes() if base.bundle is not None else None
            error = base.error or ""
        else:
            used = plan
            bundle, error = _run_build(self.opa, plan)
            if bundle is None and plan.fallback is not None and _NOT_A_RULE in error:
                used = plan.fallback
                bundle, fallback_error = _run_build(self.opa, used)
                if bundle is None:
                    error = f"{error}\n(query wrapper) {fallback_error}"
        if bundle is not None and self.target == "plan":
            plan_bundle, plan_error = _run_build(self.opa, used, "plan")
            if plan_bundle is None:
                bundle, error = None, f"(opa build -t plan) {plan_error}"
            else:
                try:
                    bundle = _with_plan(bundle, plan_bundle)
                except (tarfile.TarError, OSError, ValueError) as exc:
                    bundle, error = None, f"(opa build -t plan) unusable plan bundle: {exc}"
        meta = {
            "ok": bundle is not None,
            "kind": used.kind,
            "entrypoint": used.entrypoint,
            "error": None if bundle is not None else error,
            "opa": self.version,
        }
        if bundle is not None:
            # Bundle first: a meta file never points at a missing bundle.
            _write_atomic(bundle_path, bundle)
        _write_atomic(meta_path, json.dumps(meta, indent=1).encode("utf-8"))
        return CompileResult(
            ok=bundle is not None,
            kind=used.kind,
            entrypoint=used.entrypoint,
            bundle=bundle_path if bundle is not None else None,
            error=meta["error"],
            cached=False,
        )

    def compile_all(
        self,
        plans: Iterable[tuple[str, Plan]],
        jobs: int = MAX_JOBS,
        progress: Callable[[int, int, int], None] | None = None,
    ) -> dict[str, CompileResult]:
        """Compiles plans keyed by an id; cache hits never touch a worker.

        The workers are threads that each drive one `opa` process: the work
        happens in those processes, and forking this interpreter (which may
        already hold a Wasm engine with its own threads) is best avoided.
        """
        jobs = max(1, min(jobs, MAX_JOBS, os.cpu_count() or 1))
        results: dict[str, CompileResult] = {}
        todo: list[tuple[str, Plan]] = []
        for ident, plan in plans:
            hit = self.lookup(plan)
            if hit is not None:
                results[ident] = hit
            else:
                todo.append((ident, plan))
        # Identical plans (some cases share modules/data/entrypoint) build once.
        by_key: dict[str, list[str]] = {}
        unique: dict[str, Plan] = {}
        for ident, plan in todo:
            key = plan_key(self.version, plan, self.target)
            by_key.setdefault(key, []).append(ident)
            unique.setdefault(key, plan)
        done = 0
        lock = threading.Lock()
        if unique:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                futures = {pool.submit(self.compile, plan): key for key, plan in unique.items()}
                for fut in as_completed(futures):
                    res = fut.result()
                    for ident in by_key[futures[fut]]:
                        results[ident] = res
                    with lock:
                        done += 1
                        if progress is not None:
                            progress(done, len(unique), len(results))
        return results
