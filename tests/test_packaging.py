"""The package installs and works outside the repository: `pip install .` in a fresh virtualenv,
and a wheel from `maturin build --release` in another."""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.packaging

CHECK = """
import json, acgs
e = acgs.Engine.load(acgs.default_bundle_path())
d = e.decide(acgs.SEED_REQUEST)
print(json.dumps([[d["allow"], d["compliance_score"]], e.entrypoints, acgs.__file__]))
"""


def fresh_venv(path: Path) -> Path:
    venv.EnvBuilder(with_pip=True).create(path)
    return path / "bin" / "python"


def run(cmd: list[str], cwd: Path) -> str:
    # The locked versions, also in pip's isolated build environment (maturin): the test checks
    # the package, not whatever the index holds today.
    env = {**os.environ, "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_CONSTRAINT": str(ROOT / "requirements.lock")}
    env.pop("VIRTUAL_ENV", None)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, f"{cmd} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def check_install(python: Path, elsewhere: Path) -> None:
    out = run([str(python), "-c", CHECK], cwd=elsewhere)
    allow, entrypoints, location = __import__("json").loads(out.strip().splitlines()[-1])
    assert allow == [True, 0.96]
    assert "acgs/main/decision" in entrypoints
    assert not location.startswith(str(ROOT)), "imported the repository, not the installed package"


def test_pip_install_in_a_fresh_venv(tmp_path: Path) -> None:
    python = fresh_venv(tmp_path / "venv")
    run([str(python), "-m", "pip", "install", "-q", str(ROOT)], cwd=tmp_path)
    check_install(python, tmp_path)


def test_release_wheel_in_another_fresh_venv(tmp_path: Path) -> None:
    dist = tmp_path / "dist"
    run([sys.executable, "-m", "maturin", "build", "--release", "--quiet", "--out", str(dist)], cwd=ROOT)
    wheels = list(dist.glob("acgs-*.whl"))
    assert len(wheels) == 1, wheels
    assert "abi3" in wheels[0].name
    python = fresh_venv(tmp_path / "venv")
    run([str(python), "-m", "pip", "install", "-q", str(wheels[0])], cwd=tmp_path)
    check_install(python, tmp_path)
