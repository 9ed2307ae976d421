"""Every program in examples/ runs as a user would run it: ``python examples/<name>.py`` with this
repository's Python, as a subprocess in an empty working directory, with no network (a network
namespace of its own with loopback only, where the machine allows one), and its output checked.

A file declares what it is in its leading comment lines:

- ``# helper: ...``: used by another example, not run on its own (examples/mcp_server.py);
- ``# needs: sandbox``: needs the sandbox controller (root and bubblewrap); skipped with the
  reason where the machine lacks it, a failure instead when ``ACGS_SANDBOX_REQUIRED=1``.

Every ``examples/*.py`` is run, so a new example is picked up without touching this file; the
ones listed in ``EXPECTED`` also have their output checked line by line.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.services.sandbox_fixtures import host_problem as sandbox_problem

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples").glob("*.py"))
#: A guard's decision id, as printed with a denial.
DECISION = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"

#: Per example, patterns its output must match (re.search, multi-line), in this order.
EXPECTED: dict[str, list[str]] = {
    "quickstart.py": [
        r"^read_file: contents of /workspace/notes\.txt$",
        rf"^http_get denied: argument url: host evil\.example\.net is not one of: .*\(decision {DECISION}\)$",
    ],
    "langgraph_agent.py": [
        r"^success: contents of /workspace/notes\.txt$",
        rf"^error: Tool call denied by the constitution: argument path /workspace/\.env matches the forbidden pattern \*\*/\.env \(ACGS decision {DECISION}\)$",
        r"^agent: .+$",
    ],
    "openai_agents.py": [
        r"^c1: 200 OK from https://en\.wikipedia\.org/wiki/Constitution$",
        rf"^c2: Tool call denied by the constitution: argument url: host pastebin\.com is not one of: .*\(ACGS decision {DECISION}\)$",
        r"^agent: .+$",
    ],
    "pydantic_ai_agent.py": [
        r"^success: wrote 8 bytes to /workspace/report\.md$",
        rf"^failed: Tool call denied by the constitution: argument path /workspace/\.git/hooks/pre-commit .*\*\*/\.git/\*\* \(ACGS decision {DECISION}\)$",
        r"^agent: .+$",
    ],
    "mcp_proxy.py": [
        r"^tools: \['read_file'\]$",  # db.drop_table: hidden by the proxy
        r"^read_file: ok: contents of /workspace/notes\.txt$",
        rf"^db\.drop_table: error: ACGS: tool 'db\.drop_table' denied \(decision {DECISION}\): tool db\.drop_table is denied by the constitution$",
    ],
    "sandboxed_code.py": [  # examples/sandboxed_code.py: the sum ran in the sandbox, ruby was refused
        r"^completed, exit code 0: 45$",
        rf"^ruby denied: .+\(decision {DECISION}\)$",
    ],
    "approval.py": [
        r"^agent waits for a reviewer \.\.\.$",
        r"^reviewer sees: http_post \{'url': 'https://api\.github\.com/repos/acme/app/issues/7/comments', 'body': 'Fixed in 1\.4\.2'\} from triage-agent$",
        r"^  because: tool http_post requires approval$",
        r"^reviewer runs: curl -X POST http://127\.0\.0\.1:\d+/evolution/requests/act_[0-9a-f]{32}/approve ",
        r"^agent: 201 Created at https://api\.github\.com/repos/acme/app/issues/7/comments$",
    ],
}


def header(path: Path) -> dict[str, str]:
    """The ``# key: value`` lines the file starts with."""
    found: dict[str, str] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        key, sep, value = line.lstrip("#").partition(":")
        if sep and key.strip() in ("helper", "needs"):
            found[key.strip()] = value.strip()
    return found


#: What each declared need requires of the machine: None when it has it, else why not.
NEEDS = {"sandbox": (sandbox_problem, "ACGS_SANDBOX_REQUIRED")}


@functools.cache
def offline_prefix() -> list[str]:
    """A command prefix running the example in a network namespace of its own, loopback up, or
    [] where the machine does not allow one (then the proxy variables below refuse the rest)."""
    unshare, ip = shutil.which("unshare"), shutil.which("ip")
    if os.geteuid() != 0 or unshare is None or ip is None:
        return []
    prefix = [unshare, "--net", "sh", "-c", f'"{ip}" link set lo up && exec "$@"', "sh"]
    probe = subprocess.run([*prefix, "true"], capture_output=True, timeout=60)
    return prefix if probe.returncode == 0 else []


def example_env(tmp_path: Path) -> dict[str, str]:
    # Nothing of this session's configuration (ACGS settings, keys, import paths) reaches it.
    dropped = ("ACGS_", "OPENAI_", "PYTHONPATH", "PYTHONHOME")
    env = {k: v for k, v in os.environ.items() if not k.startswith(dropped) and not k.lower().endswith("_proxy")}
    closed = "http://127.0.0.1:9"  # the discard port: nothing listens
    env.update(
        ACGS_DATA_DIR=str(tmp_path / "data"),
        TMPDIR=str(tmp_path),
        HTTP_PROXY=closed, HTTPS_PROXY=closed, ALL_PROXY=closed, NO_PROXY="127.0.0.1,localhost",
        PYTHONDONTWRITEBYTECODE="1",
    )  # fmt: skip
    return env


def unmet_need(example: Path) -> str | None:
    """Why ``example`` cannot run here (a helper, or a need the machine lacks), or None. A need
    whose ``*_REQUIRED`` variable is 1 fails the test instead."""
    declared = header(example)
    if "helper" in declared:
        return f"a helper, not an example: {declared['helper']}"
    for need in filter(None, (n.strip() for n in declared.get("needs", "").split(","))):
        assert need in NEEDS, f"{example.name} declares '# needs: {need}', which this test does not know ({sorted(NEEDS)})"
        check, required = NEEDS[need]
        problem = check()
        if problem and os.environ.get(required) == "1":
            pytest.fail(f"{required}=1 but {problem}")
        if problem:
            return f"{example.name} needs {need}: {problem}"
    return None


def run_example(python: Path | str, example: Path, tmp_path: Path) -> str:
    """Runs ``example`` with ``python`` as a user would, offline, in an empty working directory
    under ``tmp_path``; checks its exit, its output and that it left nothing behind; returns its
    output."""
    work = tmp_path / f"work-{example.stem}"
    work.mkdir()
    proc = subprocess.run(
        [*offline_prefix(), str(python), str(example)],
        cwd=work, env=example_env(tmp_path), capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    report = f"{example.name} exited {proc.returncode}\n--- stdout\n{proc.stdout[-4000:]}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    assert "Traceback" not in proc.stderr, report
    assert proc.stdout.strip(), report
    at = 0
    for pattern in EXPECTED.get(example.name, []):
        match = re.compile(pattern, re.M).search(proc.stdout, at)
        assert match, f"no line matching {pattern!r} (in this order)\n{report}"
        at = match.end()
    assert not list(work.iterdir()), f"{example.name} left files in its working directory: {list(work.iterdir())}"
    return proc.stdout


def test_the_examples_are_found() -> None:
    names = {p.name for p in EXAMPLES}
    assert set(EXPECTED) <= names, set(EXPECTED) - names
    assert "mcp_server.py" in names and header(ROOT / "examples" / "mcp_server.py").get("helper")


@pytest.mark.parametrize("example", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_example_runs(example: Path, tmp_path: Path) -> None:
    reason = unmet_need(example)
    if reason:
        pytest.skip(reason)
    run_example(sys.executable, example, tmp_path)
