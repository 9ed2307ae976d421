"""The run's work dir: every request file name is a plain relative path, and files that cannot
be laid out or do not fit are the request's fault (400), never a controller fault (500) nor a
silently shortened file; the gVisor Sentry's debug log is capped on a tmpfs of its own."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from acgs.errors import InvalidInputError
from acgs.services.sandbox import SandboxService
from acgs.services.sandbox.workdir import check_files
from tests.services.sandbox_fixtures import (  # noqa: F401 (fixtures)
    client,
    execute,
    leftovers,
    require_runtime,
    sandbox_service,
)

MiB = 1024 * 1024

BAD_NAMES = [".", "..", "./main2.py", "a/.", "a/./b", "a//b", "a/", "/etc/passwd", "../x", "a\0b", "x" * 256, "a/" * 1600 + "b"]


@pytest.mark.parametrize("name", BAD_NAMES, ids=range(len(BAD_NAMES)))
def test_file_names_must_be_plain_relative_paths(name: str) -> None:
    with pytest.raises(InvalidInputError):
        check_files({name: b"x"}, MiB)


def test_a_file_cannot_also_be_a_directory() -> None:
    with pytest.raises(InvalidInputError, match="directory"):
        check_files({"a": b"1", "a/b": b"2"}, MiB)
    assert set(map(str, check_files({"a/b": b"1", "a/c": b"2", "d": b""}, MiB))) == {"a/b", "a/c", "d"}


@pytest.mark.parametrize(
    "files",
    [{".": "x"}, {"..": "x"}, {"lib/.": "x"}, {"helper.py": "1", "helper.py/x": "2"}, {"x" * 300: "x"}],
    ids=["dot", "dotdot", "trailing-dot", "file-and-dir", "long-name"],
)
def test_bad_file_names_are_a_400(client: TestClient, sandbox_service: SandboxService, files: dict[str, str]) -> None:
    # Before: "." and "lib/." crashed the controller (500), the others failed the run (500).
    out = execute(client, "print(1)", files=files, expect=400)
    assert out["status"] == "error" and out["error"], out


def test_files_that_overflow_the_disk_are_a_400_not_a_truncated_file(client: TestClient, sandbox_service: SandboxService) -> None:
    # 1 MiB of content in two files fits the byte count but not the 1 MiB tmpfs (a page each,
    # at least): the second write comes back short. Before, the run started with that file
    # silently cut.
    code = "import os; print(os.path.getsize('b.txt'))"
    files = {"a.txt": "x", "b.txt": "y" * (MiB - 64 - len(code))}
    out = execute(client, code, files=files, limits={"disk_mb": 1}, expect=400)
    assert out["status"] == "error" and "do not fit" in out["error"], out
    # Many tiny files: their blocks, not their bytes, fill the disk.
    many = {f"f{i}.txt": "z" for i in range(600)}
    out = execute(client, "print(1)", files=many, limits={"disk_mb": 1}, expect=400)
    assert "do not fit" in out["error"], out
    assert leftovers(sandbox_service) == []


def test_the_gvisor_debug_log_is_capped(client: TestClient, sandbox_service: SandboxService) -> None:
    require_runtime(sandbox_service, "gvisor")
    rt: Any = sandbox_service.runtimes["gvisor"]
    saved = rt.debug_log_cap
    rt.debug_log_cap = 256 * 1024
    try:
        # Each refused ptrace is a line in the Sentry's log (about 200 bytes): 4000 of them
        # overflow a 256 KiB cap.
        code = "import ctypes\nlibc = ctypes.CDLL(None)\nfor _ in range(4000): libc.syscall(101, 0, 0, 0, 0)\nprint('done')"
        out = execute(client, code, runtime="gvisor", limits={"timeout_s": 120, "cpu_seconds": 60})
    finally:
        rt.debug_log_cap = saved
    assert out["status"] == "completed" and out["stdout"] == "done\n", out
    assert "debug log reached its cap" in (out["error"] or ""), out
    counted = sum(v["count"] for v in out["violations"])
    assert counted < 4000, out["violations"]
    assert leftovers(sandbox_service) == []
