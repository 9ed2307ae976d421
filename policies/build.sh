#!/usr/bin/env bash
# Compiles the Rego under policies/ (and the engine's test fixture) to OPA Wasm bundles with the
# pinned OPA; the shipped bundles and the stress fixture also carry OPA's plan (/plan.json).
# `make bundles` runs it; tests/test_bundles.py runs it with OUT=<scratch dir> and compares what
# it builds with the committed bundles.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OPA="${OPA:-$HOME/.local/bin/opa}"
want="${OPA_VERSION:-v1.22.3}"
# Read the whole output first: `grep -q` quitting early would SIGPIPE opa under pipefail.
have="$("$OPA" version 2>/dev/null || true)"
if ! grep -qx "Version: ${want#v}" <<<"$have"; then
	echo "policies/build.sh: need OPA ${want#v} at $OPA (run 'make opa' or set OPA=...)" >&2
	exit 1
fi
# With OUT set every bundle lands there; otherwise each goes where it is committed.
package_dir="${OUT:-$root/python/acgs/bundles}"
fixture_dir="${OUT:-$root/tests/fixtures}"
service_fixture_dir="${OUT:-$root/tests/services/fixtures}"
core_fixture_dir="${OUT:-$root/crates/acgs-core/tests/fixtures}"
mkdir -p "$package_dir" "$fixture_dir" "$service_fixture_dir" "$core_fixture_dir"
package_dir="$(cd "$package_dir" && pwd)"
fixture_dir="$(cd "$fixture_dir" && pwd)"
service_fixture_dir="$(cd "$service_fixture_dir" && pwd)"
core_fixture_dir="$(cd "$core_fixture_dir" && pwd)"

# with_plan OUT ARGS...: `opa build -t wasm ARGS -o OUT`, then `opa build -t plan` with the same
# ARGS, and OUT gains the plan as /plan.json beside /policy.wasm (the plan is what ACGS's native
# evaluator compiles), by python/acgs/bundle_plan.py, which `acgs bundle build` uses too.
with_plan() {
	local out="$1"
	shift
	local plan_tmp
	plan_tmp="$(mktemp "${TMPDIR:-/tmp}/acgs-plan.XXXXXX")"
	"$OPA" build -t wasm "$@" -o "$out"
	"$OPA" build -t plan "$@" -o "$plan_tmp"
	python3 "$root/python/acgs/bundle_plan.py" "$out" "$plan_tmp"
	rm -f "$plan_tmp"
}

# Paths stay relative to the repository so no builder's directory ends up in a bundle.
cd "$root"
with_plan "$package_dir/example.tar.gz" -e acgs/example/allow -e acgs/example/decision \
	policies/example

# The constitution: policies/acgs mounted at data.acgs, so constitution/data.json is
# data.acgs.constitution (as under `opa test policies/`). Tests stay out of the bundle.
with_plan "$package_dir/constitution.tar.gz" --ignore '*_test.rego' \
	-e acgs/main/decision -e acgs/main/allow -e acgs/evolution/decision -e acgs/sandbox/decision \
	-e acgs/fast_path/route -e acgs/tools/decision \
	acgs:policies/acgs

# The same constitution edited in several places (tests/fixtures/edited/edit.py): what the
# differential tests compare the plan with the Wasm on, beyond the shipped rules. Built from a
# scratch copy laid out as the repository is, so the bundle's paths are the same.
edited="$(mktemp -d "${TMPDIR:-/tmp}/acgs-edited.XXXXXX")"
python3 "$root/tests/fixtures/edited/edit.py" policies/acgs "$edited/policies/acgs"
(
	cd "$edited"
	with_plan "$fixture_dir/constitution-edited.tar.gz" \
		-e acgs/main/decision -e acgs/main/allow -e acgs/evolution/decision -e acgs/sandbox/decision \
		-e acgs/fast_path/route -e acgs/tools/decision \
		acgs:policies/acgs
)
rm -rf "$edited"

cd "$root/tests/fixtures/stress"
with_plan "$fixture_dir/stress.tar.gz" -e stress/spin -e stress/hog -e stress/echo -e stress/both \
	stress.rego

# The decision-pipeline fixtures: a small constitution, and a policy that reads the clock.
cd "$root/tests/fixtures"
"$OPA" build -t wasm -e acgs/main/decision -e acgs/main/allow pipeline -o "$fixture_dir/pipeline.tar.gz"
cd "$root/tests/fixtures/clock"
"$OPA" build -t wasm -e clock/now clock.rego -o "$fixture_dir/clock.tar.gz"

# The policy service's fixture: decisions that allow when evaluated and fault when asked to.
cd "$root/tests/services/fixtures/failclosed"
"$OPA" build -t wasm -e failclosed/decision -e failclosed/allow -e failclosed/value -e failclosed/nothing \
	. -o "$service_fixture_dir/failclosed.tar.gz"

# The plan evaluator's number-spelling fixture (crates/acgs-core/tests/plan_evaluator.rs).
cd "$root/crates/acgs-core/tests/fixtures/spelling"
with_plan "$core_fixture_dir/spelling.tar.gz" -e t/nums spelling.rego

for b in "$package_dir/example.tar.gz" "$package_dir/constitution.tar.gz" "$fixture_dir/constitution-edited.tar.gz" \
	"$fixture_dir/stress.tar.gz" \
	"$fixture_dir/pipeline.tar.gz" "$fixture_dir/clock.tar.gz" "$service_fixture_dir/failclosed.tar.gz" \
	"$core_fixture_dir/spelling.tar.gz"; do
	echo "built $b ($(wc -c <"$b") bytes)"
done
