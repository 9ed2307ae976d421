#!/usr/bin/env bash
# Builds the warm pool's launcher (launcher.c) into the path given, as a static executable with
# no libc of the host's: zig's C compiler and musl, for this machine's architecture. The same
# binary runs in a developer's tree (`make sandbox-launcher`) and in the wheel (`make wheel`),
# on any Linux kernel the sandbox supports, whatever glibc the host has or lacks.
# zig comes from the `ziglang` package pinned in requirements.lock (the venv's python, $PY).
set -euo pipefail
out=${1:?usage: sandbox-launcher.sh OUTPUT}
src="$(cd "$(dirname "$0")/.." && pwd)/python/acgs/services/sandbox/launcher/launcher.c"
py=${PY:-python3}
arch=$(uname -m)
if ! "$py" -c "import ziglang" 2>/dev/null; then
    echo "sandbox-launcher: zig is not installed in $py's environment (the ziglang package: run \`make setup\`)" >&2
    exit 1
fi
# -Wno-sign-compare: musl's CMSG_NXTHDR macro compares a size_t with a ptrdiff_t; the warning is
# in the libc header's expansion, not in launcher.c. -s: no symbols (the binary is package data).
"$py" -m ziglang cc -target "$arch-linux-musl" -static -O2 -s -Wall -Wextra -Werror -Wno-sign-compare \
    -o "$out.tmp" "$src"
mv "$out.tmp" "$out"
