"""Regenerates the x86-64 syscall table the sandbox's seccomp compiler reads
(python/acgs/services/sandbox/data/seccomp/syscalls-x86_64.json) from the kernel headers
of Debian's linux-libc-dev: `python scripts/syscall_table.py [unistd_64.h]`."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

HEADER = Path("/usr/include/x86_64-linux-gnu/asm/unistd_64.h")
OUT = Path(__file__).resolve().parent.parent / "python/acgs/services/sandbox/data/seccomp/syscalls-x86_64.json"


def main() -> None:
    header = Path(sys.argv[1]) if len(sys.argv) > 1 else HEADER
    table = {
        m.group(1): int(m.group(2))
        for m in re.finditer(r"^#define __NR_(\w+)\s+(\d+)\s*$", header.read_text(), re.MULTILINE)
    }
    body = {"architecture": "x86_64", "source": "linux-libc-dev asm/unistd_64.h", "syscalls": table}
    OUT.write_text(json.dumps(body, indent=1, sort_keys=True) + "\n")
    print(f"{len(table)} syscalls -> {OUT}")


if __name__ == "__main__":
    main()
