#!/usr/bin/env bash
# Compiles the benchmark policies to OPA Wasm bundles in bench/bundles/ with the pinned OPA.
# The bundles are committed so every host is measured on the same policy.wasm.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
OPA="${OPA:-$HOME/.local/bin/opa}"
want="1.22.3"
# Read the whole output first: `grep -q` quitting early would SIGPIPE opa under pipefail.
have="$("$OPA" version 2>/dev/null || true)"
if ! grep -qx "Version: $want" <<<"$have"; then
	echo "build.sh: need OPA $want at $OPA (run 'make opa' or set OPA=...)" >&2
	exit 1
fi
# OUT lets bench/run.py rebuild into a scratch directory to check the committed bundles.
out="$(mkdir -p "${OUT:-$here/../bundles}" && cd "${OUT:-$here/../bundles}" && pwd)"
# Relative paths keep the builder's directory out of the bundle (and the Wasm file names).
cd "$here"
"$OPA" build -t wasm -e bench/small/allow small -o "$out/small.tar.gz"
"$OPA" build -t wasm -e bench/medium/decision medium -o "$out/medium.tar.gz"
for b in small medium; do
	echo "built $out/$b.tar.gz ($(wc -c <"$out/$b.tar.gz") bytes)"
done
