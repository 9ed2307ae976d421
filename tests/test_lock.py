"""requirements.lock pins every requirement pyproject.toml names for development (build, runtime,
test and bench), each to a version inside the project's range, and the venv holds exactly those
versions: what a fresh machine tests is what CI tested. `make lock` refreshes it on purpose."""

from __future__ import annotations

import subprocess
import sys
from importlib import metadata
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent


def pins() -> dict[str, str]:
    out: dict[str, str] = {}
    for line in (ROOT / "requirements.lock").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version, f"requirements.lock: {line!r} is not an exact pin"
            out[canonicalize_name(name.split("[")[0])] = version.split(";")[0].strip()
    return out


def wanted() -> list[Requirement]:
    text = subprocess.run([sys.executable, str(ROOT / "scripts" / "requirements.py")], capture_output=True,
                          text=True, check=True).stdout
    return [Requirement(line) for line in text.splitlines() if line.strip()]


def test_every_requirement_is_pinned_inside_its_range() -> None:
    locked = pins()
    for req in wanted():
        if req.marker is not None and not req.marker.evaluate():
            continue
        name = canonicalize_name(req.name)
        assert name in locked, f"{req} is not in requirements.lock (run `make lock`)"
        assert req.specifier.contains(locked[name], prereleases=True), \
            f"requirements.lock pins {name}=={locked[name]}, outside {req} (run `make lock`)"


def test_the_venv_holds_the_locked_versions() -> None:
    for name, version in pins().items():
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            installed = "nothing"
        assert installed == version, f"{name} {installed} installed, requirements.lock pins {version} (run `make setup`)"
