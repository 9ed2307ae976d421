"""The committed bundles match their sources: each is rebuilt with the pinned OPA and compared.

Contents are compared, not tar bytes: policy.wasm byte for byte, data.json and .manifest as
parsed JSON, every other file (the Rego sources OPA copies in) byte for byte. `opa build` at the
pinned version is deterministic: two builds of the same sources give identical policy.wasm (and
identical archives), so a byte comparison of the Wasm is exact, not flaky.

Without the pinned OPA the test is skipped, unless ACGS_BUNDLES_REQUIRED is set (`make
test-python` sets it): then it fails, so CI cannot pass with the check silently off.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Build script -> the bundles it writes (file name under OUT -> committed path).
BUILDS: dict[Path, dict[str, Path]] = {
    ROOT / "policies" / "build.sh": {
        "example.tar.gz": ROOT / "python" / "acgs" / "bundles" / "example.tar.gz",
        "constitution.tar.gz": ROOT / "python" / "acgs" / "bundles" / "constitution.tar.gz",
        "stress.tar.gz": ROOT / "tests" / "fixtures" / "stress.tar.gz",
        "constitution-edited.tar.gz": ROOT / "tests" / "fixtures" / "constitution-edited.tar.gz",
        "pipeline.tar.gz": ROOT / "tests" / "fixtures" / "pipeline.tar.gz",
        "clock.tar.gz": ROOT / "tests" / "fixtures" / "clock.tar.gz",
        "failclosed.tar.gz": ROOT / "tests" / "services" / "fixtures" / "failclosed.tar.gz",
        "spelling.tar.gz": ROOT / "crates" / "acgs-core" / "tests" / "fixtures" / "spelling.tar.gz",
    },
    ROOT / "bench" / "policies" / "build.sh": {
        "small.tar.gz": ROOT / "bench" / "bundles" / "small.tar.gz",
        "medium.tar.gz": ROOT / "bench" / "bundles" / "medium.tar.gz",
        "rbac.tar.gz": ROOT / "bench" / "bundles" / "rbac.tar.gz",
        "gateway.tar.gz": ROOT / "bench" / "bundles" / "gateway.tar.gz",
    },
}

JSON_FILES = {"data.json", ".manifest"}


def pinned_version() -> str:
    makefile = (ROOT / "Makefile").read_text()
    match = re.search(r"^OPA_VERSION := (v\S+)$", makefile, re.MULTILINE)
    assert match, "Makefile no longer pins OPA_VERSION"
    return match.group(1)


def pinned_opa() -> Path:
    version = pinned_version()
    candidates = [Path.home() / ".local" / "bin" / "opa"]
    on_path = shutil.which("opa")
    if on_path:
        candidates.append(Path(on_path))
    for candidate in candidates:
        if not candidate.is_file():
            continue
        out = subprocess.run([str(candidate), "version"], capture_output=True, text=True).stdout
        if f"Version: {version.removeprefix('v')}" in out.splitlines():
            return candidate
    reason = f"OPA {version} not found (run `make opa`); cannot check the committed bundles"
    if os.environ.get("ACGS_BUNDLES_REQUIRED"):
        pytest.fail(reason)
    pytest.skip(reason)


def contents(bundle: Path) -> dict[str, object]:
    """File name -> parsed JSON for data and manifest, raw bytes for everything else."""
    files: dict[str, object] = {}
    with tarfile.open(bundle, "r:gz") as tar:
        for member in tar.getmembers():
            if not member.isfile():
                continue
            extracted = tar.extractfile(member)
            assert extracted is not None
            name = member.name.lstrip("/")
            raw = extracted.read()
            files[name] = json.loads(raw) if name in JSON_FILES else raw
    return files


@pytest.fixture(scope="module")
def rebuilt(tmp_path_factory: pytest.TempPathFactory) -> dict[Path, Path]:
    """Committed bundle -> the same bundle rebuilt from the sources in a scratch directory."""
    opa = pinned_opa()
    pairs: dict[Path, Path] = {}
    for script, outputs in BUILDS.items():
        out = tmp_path_factory.mktemp("bundles")
        env = {**os.environ, "OUT": str(out), "OPA": str(opa), "OPA_VERSION": pinned_version()}
        proc = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True)
        assert proc.returncode == 0, f"{script} failed:\n{proc.stdout}\n{proc.stderr}"
        for name, committed in outputs.items():
            pairs[committed] = out / name
    return pairs


@pytest.mark.parametrize(
    "committed",
    [path for outputs in BUILDS.values() for path in outputs.values()],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_committed_bundle_matches_its_sources(committed: Path, rebuilt: dict[Path, Path]) -> None:
    fresh = contents(rebuilt[committed])
    stored = contents(committed)
    assert sorted(stored) == sorted(fresh), f"{committed.name}: files differ"
    assert "policy.wasm" in fresh
    for name in sorted(fresh):
        assert stored[name] == fresh[name], (
            f"{committed.relative_to(ROOT)}: {name} is stale; run `make bundles` and commit the result"
        )


def test_every_committed_bundle_is_checked() -> None:
    tracked = subprocess.run(
        ["git", "ls-files", "*.tar.gz"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    checked = {str(p.relative_to(ROOT)) for outputs in BUILDS.values() for p in outputs.values()}
    assert set(tracked) <= checked, f"bundles without a build check: {set(tracked) - checked}"
