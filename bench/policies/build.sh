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

# The peer comparison's policies (bench/peers.py) carry OPA's plan as well, as /plan.json beside
# /policy.wasm (added by python/acgs/bundle_plan.py, as for the shipped bundles), so ACGS's plan
# evaluator runs them too. Their unit tests run first; tests and generators stay out of the bundles.
with_plan() {
	local name="$1" entrypoint="$2" plan_tmp
	"$OPA" test "$name" >/dev/null || { "$OPA" test "$name" -v; exit 1; }
	plan_tmp="$(mktemp "${TMPDIR:-/tmp}/bench-plan.XXXXXX")"
	"$OPA" build -t wasm --ignore '*_test.rego' --ignore '*.py' --ignore '*.jsonl' -e "$entrypoint" "$name" -o "$out/$name.tar.gz"
	"$OPA" build -t plan --ignore '*_test.rego' --ignore '*.py' --ignore '*.jsonl' -e "$entrypoint" "$name" -o "$plan_tmp"
	python3 "$here/../../python/acgs/bundle_plan.py" "$out/$name.tar.gz" "$plan_tmp"
	rm -f "$plan_tmp"
}
with_plan rbac bench/rbac/decision
with_plan gateway bench/gateway/decision

for b in small medium rbac gateway; do
	echo "built $out/$b.tar.gz ($(wc -c <"$out/$b.tar.gz") bytes)"
done
