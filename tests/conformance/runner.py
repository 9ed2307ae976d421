"""Runs OPA's conformance cases through ACGS and reports the outcome."""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import OPA_VERSION, compare, regoterm
from .build import MAX_JOBS, CompileResult, Compiler, cache_root, find_opa, opa_version
from .cases import Case, SetupError, cases_dir, exceptions_file, load_cases, load_exceptions, plan_case

DEFAULT_THRESHOLD = 0.99
CONFLICT_TEXTS = ("var assignment conflict", "object insert conflict")


@dataclass
class Outcome:
    passed: bool
    cause: str = ""  # short failure class, used for grouping
    detail: str = ""  # message or diff


@dataclass
class Report:
    opa_version: str
    total: int = 0
    skipped: list[Case] = field(default_factory=list)
    not_compiled: list[tuple[Case, str, str]] = field(default_factory=list)  # case, bucket, error
    compiled: list[Case] = field(default_factory=list)
    passed: list[Case] = field(default_factory=list)
    failed: list[tuple[Case, Outcome, str]] = field(default_factory=list)  # case, outcome, group
    wrapped: int = 0
    eval_seconds: float = 0.0

    @property
    def pass_rate(self) -> float | None:
        if not self.compiled:
            return None
        return len(self.passed) / len(self.compiled)


def case_id(case: Case) -> str:
    return f"{case.file}#{case.index}"


# --- compile failures --------------------------------------------------------

_LOCATION = re.compile(r"\S+\.rego:\d+(:\d+)?:\s*")
_ERROR_CODE = re.compile(r"\b(rego_[a-z_]+_error|[a-z_]+_error):\s*(.*)")


def compile_bucket(error: str, kind: str = "direct") -> str:
    """Buckets an `opa build` error by its error code and message."""
    prefix = "(query wrapper) " if kind == "wrapper" or "(query wrapper)" in error else ""
    relevant = error.split("(query wrapper)", 1)[-1]
    for line in relevant.splitlines():
        m = _ERROR_CODE.search(_LOCATION.sub("", line))
        if m:
            msg = m.group(2).strip()
            # Keep the message's shape, not the case-specific names in it.
            msg = re.sub(r"rule data\.[\w.]+ is recursive.*", "rule is recursive", msg)
            msg = re.sub(r"\s+", " ", msg)
            return f"{prefix}{m.group(1)}: {msg[:120]}"
    first = relevant.strip().splitlines()[0] if relevant.strip() else "unknown error"
    return prefix + first[:120]


# --- evaluation ----------------------------------------------------------------


class _EngineApi:
    """The parts of the acgs module the runner uses, resolved once."""

    def __init__(self, module: Any):
        self.module = module
        errors = getattr(module, "errors", None)
        self.root_error = getattr(errors, "AcgsError", Exception)
        self.evaluation_error = getattr(errors, "EvaluationError", self.root_error)
        self.bundle_error = getattr(errors, "BundleError", self.root_error)
        self.timeout_error = getattr(errors, "EvaluationTimeout", self.root_error)
        self.limit_error = getattr(errors, "ResourceLimitExceeded", self.root_error)


def import_acgs() -> Any:
    try:
        import acgs  # noqa: PLC0415 - optional until `make dev` has run
    except ImportError as exc:
        raise SetupError(f"cannot import acgs ({exc}); build it with `make dev`") from exc
    return acgs


_BUILTIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")


def _missing_builtins(message: str) -> list[str]:
    # The loader's message names the builtins it lacks; pick out dotted or
    # plain identifiers after the word "builtin(s)".
    m = re.search(r"builtins?\b[^:]*:\s*(.*)", message, re.IGNORECASE | re.DOTALL)
    if not m:
        return []
    return sorted(set(_BUILTIN_NAME.findall(m.group(1))))[:10]


def _rows_from(result_text: str, result: CompileResult, case: Case) -> list[regoterm.RegoObject]:
    """Turns the entrypoint's result set into the query's binding rows."""
    parsed = regoterm.parse(result_text)
    # OPA's Wasm result set is a set of rows; in Rego syntax it prints as
    # {{"result": ...}} (JSON flattens it to an array).
    if isinstance(parsed, regoterm.RegoSet):
        parsed = parsed.items
    if not isinstance(parsed, list):
        raise ValueError(f"result set is neither a set nor an array: {compare.short(parsed)}")
    rows: list[regoterm.RegoObject] = []
    for row in parsed:
        if not isinstance(row, regoterm.RegoObject) or row.get("result", _MISSING) is _MISSING:
            raise ValueError(f"result row without 'result': {compare.short(row)}")
        value = row.get("result")
        if result.kind == "direct":
            assert case.plan is not None
            rows.append(regoterm.RegoObject([(case.plan.variables[0], value)]))
        else:
            members = value.items if isinstance(value, regoterm.RegoSet) else value
            if not isinstance(members, list):
                raise ValueError(f"query wrapper value is not a set: {compare.short(value)}")
            for member in members:
                if not isinstance(member, regoterm.RegoObject):
                    raise ValueError(f"binding row is not an object: {compare.short(member)}")
                rows.append(member)
    return rows


_MISSING = object()


def evaluate_case(api: _EngineApi, case: Case, result: CompileResult, evaluator: str = "wasm") -> Outcome:
    assert result.bundle is not None
    try:
        if evaluator == "wasm":
            engine = api.module.Engine.load(str(result.bundle))
        else:
            engine = api.module.Engine.load(str(result.bundle), evaluator=evaluator)
    except api.bundle_error as exc:
        missing = _missing_builtins(str(exc))
        cause = f"bundle rejected: unsupported builtin {', '.join(missing)}" if missing else "bundle rejected"
        return Outcome(False, cause, f"BundleError: {exc}")
    except Exception as exc:  # noqa: BLE001 - any load failure is a case failure
        return Outcome(False, f"bundle load failed: {type(exc).__name__}", str(exc))

    raw_input = case.input_json.encode("utf-8") if case.input_json is not None else None
    error: BaseException | None = None
    rows: list[regoterm.RegoObject] = []
    try:
        evaluate_rego = getattr(engine, "evaluate_rego", None)
        if evaluate_rego is not None:
            text = evaluate_rego(raw_input, result.entrypoint)
        else:
            text = engine.evaluate_json(raw_input, result.entrypoint).decode("utf-8")
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # noqa: BLE001 - a Rust panic surfaces as BaseException
        error = exc
    else:
        try:
            rows = _rows_from(text, result, case)
        except (ValueError, regoterm.RegoParseError) as exc:
            return Outcome(False, "unparseable result", f"{exc}\n  raw: {text[:300]}")

    def unexpected_error() -> Outcome:
        assert error is not None
        kind = type(error).__name__
        if isinstance(error, api.timeout_error):
            return Outcome(False, "evaluation timeout", str(error))
        if isinstance(error, api.limit_error):
            return Outcome(False, "resource limit exceeded", str(error))
        if isinstance(error, api.evaluation_error):
            return Outcome(False, f"unexpected error: {_error_shape(str(error))}", f"{kind}: {error}")
        return Outcome(False, f"unexpected {kind}", f"{kind}: {error}")

    if case.want_defined is not None:
        if error is not None:
            return unexpected_error()
        got = len(rows) > 0
        if got != bool(case.want_defined):
            want_text = "defined" if case.want_defined else "undefined"
            got_text = "defined" if got else "undefined"
            detail = f"  want: {want_text}\n  got:  {got_text}"
            if rows:
                detail += f" {compare.short(rows)}"
            return Outcome(False, f"wrong definedness (want {want_text})", detail)
        return Outcome(True)

    if case.want_result is not None:
        if error is not None:
            return unexpected_error()
        want_rows = case.want_result
        if compare.rows_equal(want_rows, rows, case.sort_bindings):
            return Outcome(True)
        if not rows and want_rows:
            return Outcome(False, "undefined, want a result", compare.diff(_unwrap(want_rows), None))
        if rows and not want_rows:
            return Outcome(False, "defined, want undefined", compare.diff(None, _unwrap_got(rows)))
        return Outcome(False, "wrong result", compare.diff(_unwrap(want_rows), _unwrap_got(rows)))

    if case.want_error_code is not None or case.want_error is not None:
        if case.strict_error:
            # OPA's Wasm target has no strict builtin errors: the error makes
            # the expression undefined instead, as OPA's own Wasm run expects.
            if error is not None:
                return unexpected_error()
            if rows:
                return Outcome(
                    False,
                    "defined, want undefined (strict_error)",
                    f"  want: undefined (OPA: {case.want_error_code}: {case.want_error})\n"
                    f"  got:  {compare.short(_unwrap_got(rows))}",
                )
            return Outcome(True)
        if case.want_error_code == "eval_conflict_error":
            if error is None:
                return Outcome(
                    False,
                    "no conflict error",
                    f"  want: error containing {' or '.join(repr(t) for t in CONFLICT_TEXTS)}\n"
                    f"  got:  {compare.short(_unwrap_got(rows)) if rows else 'undefined'}",
                )
            text = str(error)
            if isinstance(error, api.evaluation_error) and any(t in text for t in CONFLICT_TEXTS):
                return Outcome(True)
            return Outcome(
                False,
                "wrong conflict error",
                f"  want: {' or '.join(repr(t) for t in CONFLICT_TEXTS)}\n  got:  {type(error).__name__}: {text[:300]}",
            )
        # OPA's Wasm runner has no other error codes to match either.
        detail = f"  want: {case.want_error_code}: {case.want_error}\n  got:  "
        detail += f"{type(error).__name__}: {error}" if error is not None else compare.short(_unwrap_got(rows))
        return Outcome(False, f"unmatched error code {case.want_error_code}", detail)

    # No expectation at all: OPA's runner accepts any outcome.
    return Outcome(True)


def _unwrap(rows: list[dict[str, Any]]) -> Any:
    if len(rows) == 1 and len(rows[0]) == 1:
        return next(iter(rows[0].values()))
    return rows


def _unwrap_got(rows: list[regoterm.RegoObject]) -> Any:
    if len(rows) == 1 and len(rows[0].items) == 1:
        return rows[0].items[0][1]
    return regoterm.RegoSet(list(rows))


def _error_shape(message: str) -> str:
    first = message.strip().splitlines()[0] if message.strip() else ""
    first = re.sub(r"\d+", "N", first)
    first = re.sub(r'"[^"]*"', '"…"', first)
    return first[:80]


# --- builtin attribution -----------------------------------------------------


def load_builtin_names(opa: str, version: str, root: Path) -> set[str]:
    """Names of the builtins this OPA version knows (cached next to bundles)."""
    path = root / f"builtins-{version}.json"
    try:
        return set(json.loads(path.read_text(encoding="utf-8")))
    except (OSError, ValueError):
        pass
    import subprocess  # noqa: PLC0415

    try:
        out = subprocess.run(
            [opa, "capabilities", "--current"], capture_output=True, text=True, timeout=60, check=True
        ).stdout
        names = sorted({b["name"] for b in json.loads(out).get("builtins", [])})
    except (OSError, ValueError, subprocess.SubprocessError, KeyError, TypeError):
        return set()
    from .build import _write_atomic  # noqa: PLC0415

    _write_atomic(path, json.dumps(names).encode("utf-8"))
    return set(names)


_CALL = re.compile(r"(?<![\w.])([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)\s*\(")
_WITH_AS = re.compile(r"\bas\s+([A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)")
# Names that are everywhere and rarely the interesting part of a failure.
_COMMON = {"count", "sprintf", "print", "is_string", "is_number", "object.get"}


def builtins_used(case: Case, names: set[str]) -> list[str]:
    text = "\n".join(str(m) for m in case.raw.get("modules") or []) + "\n" + case.query
    found = {m.group(1) for m in _CALL.finditer(text) if m.group(1) in names}
    # `with f as g` mocks call g without parentheses.
    found |= {m.group(1) for m in _WITH_AS.finditer(text) if m.group(1) in names}
    specific = sorted(found - _COMMON)
    return specific or sorted(found)


def failure_group(case: Case, outcome: Outcome, names: set[str]) -> str:
    if outcome.cause.startswith("bundle rejected"):
        return outcome.cause
    used = builtins_used(case, names)
    where = f"builtins {', '.join(used[:4])}" if used else "no builtin calls (core evaluation)"
    return f"{where} — {outcome.cause}"


# --- driver ------------------------------------------------------------------


def run(args: argparse.Namespace) -> tuple[Report, dict[str, Any]]:
    root = Path(args.cases).expanduser() if args.cases else cases_dir()
    if args.opa:
        os.environ["ACGS_OPA"] = args.opa
    opa = find_opa()
    version = opa_version(opa)
    exceptions = load_exceptions(exceptions_file(root))
    if exceptions.source is None:
        print("warning: OPA's Wasm exceptions.yaml not found; no case is excused", file=sys.stderr)

    cases = load_cases(root)
    if args.filter:
        cases = [c for c in cases if any(f in c.note or f in c.file for f in args.filter)]
    report = Report(opa_version=version, total=len(cases))
    for case in cases:
        plan_case(case, exceptions)

    to_build = [c for c in cases if c.plan is not None]
    report.skipped = [c for c in cases if c.plan is None]
    croot = cache_root()
    compiler = Compiler(opa, version, croot, refresh=args.refresh_cache, target=args.evaluator)
    started = time.monotonic()

    def progress(done: int, todo: int, _have: int) -> None:
        if sys.stderr.isatty() or done == todo or done % 200 == 0:
            print(f"\rcompiling: {done}/{todo}", end="" if done < todo else "\n", file=sys.stderr)

    results = compiler.compile_all(((case_id(c), c.plan) for c in to_build if c.plan), args.jobs, progress)
    built = sum(1 for r in results.values() if not r.cached)
    compile_seconds = time.monotonic() - started

    for case in to_build:
        res = results[case_id(case)]
        if res.ok:
            report.compiled.append(case)
            if res.kind == "wrapper":
                report.wrapped += 1
        else:
            report.not_compiled.append((case, compile_bucket(res.error or "", res.kind), res.error or ""))

    meta = {"compiled_now": built, "compile_seconds": round(compile_seconds, 1), "cache": str(croot)}
    if args.compile_only:
        return report, meta

    api = _EngineApi(import_acgs())
    names = load_builtin_names(opa, version, croot)
    started = time.monotonic()
    for case in report.compiled:
        outcome = evaluate_case(api, case, results[case_id(case)], args.evaluator)
        if outcome.passed:
            report.passed.append(case)
        else:
            report.failed.append((case, outcome, failure_group(case, outcome, names)))
    report.eval_seconds = time.monotonic() - started
    return report, meta


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x * 100:.2f}%"


def print_report(report: Report, meta: dict[str, Any], args: argparse.Namespace) -> None:
    out = sys.stdout
    print(f"OPA conformance (OPA {report.opa_version}, pinned {OPA_VERSION}), evaluator {args.evaluator}", file=out)
    print(f"  cases total:   {report.total}", file=out)
    print(f"  skipped:       {len(report.skipped)}", file=out)
    print(f"  not compiled:  {len(report.not_compiled)}", file=out)
    print(f"  compiled:      {len(report.compiled)}"
          f"  ({report.wrapped} via query wrapper; {meta['compiled_now']} built now, rest cached)", file=out)
    if not args.compile_only:
        print(f"  passed:        {len(report.passed)}", file=out)
        print(f"  failed:        {len(report.failed)}", file=out)
        print(f"  pass rate:     {_pct(report.pass_rate)} of compiled (threshold {_pct(args.threshold)})",
              file=out)

    if report.skipped:
        print("\nSkipped, by reason:", file=out)
        by_reason: dict[str, list[Case]] = defaultdict(list)
        for case in report.skipped:
            by_reason[case.skip_reason or "(no reason!)"].append(case)
        for reason, group in sorted(by_reason.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            permanent = " [permanent]" if group[0].permanent_skip else ""
            print(f"  [{len(group)}]{permanent} {reason}", file=out)
            for case in group:
                print(f"      - {case.note}", file=out)

    if report.not_compiled:
        print("\nNot compiled by opa (not counted as failures), by reason:", file=out)
        buckets: dict[str, list[Case]] = defaultdict(list)
        for case, bucket, _ in report.not_compiled:
            buckets[bucket].append(case)
        for bucket, group in sorted(buckets.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"  [{len(group)}] {bucket}", file=out)
            for case in group[: args.max_listed]:
                print(f"      - {case.note}", file=out)
            if len(group) > args.max_listed:
                print(f"      ... {len(group) - args.max_listed} more", file=out)

    if report.failed:
        print("\nFailures, by likely cause:", file=out)
        groups: dict[str, list[tuple[Case, Outcome]]] = defaultdict(list)
        for case, outcome, group in report.failed:
            groups[group].append((case, outcome))
        for group, members in sorted(groups.items(), key=lambda kv: (-len(kv[1]), kv[0])):
            print(f"\n  [{len(members)}] {group}", file=out)
            for case, outcome in members[: args.max_listed]:
                print(f"    - {case.note}  ({case.file})", file=out)
                if outcome.detail and not args.no_diff:
                    for line in outcome.detail.splitlines()[: args.max_diff_lines]:
                        print(f"      {line}", file=out)
            if len(members) > args.max_listed:
                print(f"    ... {len(members) - args.max_listed} more (use --filter or --json)", file=out)


def summary_json(report: Report, meta: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    skipped_by_reason = Counter(c.skip_reason for c in report.skipped)
    return {
        "opa_version": report.opa_version,
        "pinned_opa_version": OPA_VERSION,
        "filter": args.filter or [],
        "evaluator": args.evaluator,
        "totals": {
            "cases": report.total,
            "skipped": len(report.skipped),
            "not_compiled": len(report.not_compiled),
            "compiled": len(report.compiled),
            "compiled_via_query_wrapper": report.wrapped,
            "passed": len(report.passed),
            "failed": len(report.failed),
        },
        "pass_rate": report.pass_rate,
        "threshold": args.threshold,
        "evaluated": not args.compile_only,
        "compiled_now": meta["compiled_now"],
        "skipped_by_reason": dict(skipped_by_reason),
        "skipped": [
            {"note": c.note, "file": c.file, "reason": c.skip_reason, "permanent": c.permanent_skip}
            for c in report.skipped
        ],
        "not_compiled_by_reason": dict(Counter(b for _, b, _ in report.not_compiled)),
        "not_compiled": [
            {"note": c.note, "file": c.file, "reason": b, "error": e} for c, b, e in report.not_compiled
        ],
        "failures_by_group": dict(Counter(g for _, _, g in report.failed)),
        "failures": [
            {"note": c.note, "file": c.file, "topic": c.topic, "cause": o.cause, "group": g,
             "detail": o.detail}
            for c, o, g in report.failed
        ],
        "by_topic": _by_topic(report),
        "passed": [c.note for c in report.passed],
    }


def _by_topic(report: Report) -> dict[str, dict[str, int]]:
    topics: dict[str, Counter[str]] = defaultdict(Counter)
    for case in report.skipped:
        topics[case.topic]["skipped"] += 1
    for case, _, _ in report.not_compiled:
        topics[case.topic]["not_compiled"] += 1
    for case in report.passed:
        topics[case.topic]["passed"] += 1
    for case, _, _ in report.failed:
        topics[case.topic]["failed"] += 1
    return {t: dict(c) for t, c in sorted(topics.items())}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m tests.conformance", description=__doc__)
    p.add_argument("--filter", action="append", metavar="SUBSTRING",
                   help="only cases whose note or file contains SUBSTRING (repeatable)")
    p.add_argument("--json", metavar="PATH", help="write a machine-readable summary to PATH ('-' for stdout)")
    p.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD,
                   help="minimum pass rate over compiled cases (default 0.99)")
    p.add_argument("--jobs", type=int, default=MAX_JOBS, help=f"parallel opa builds (at most {MAX_JOBS})")
    p.add_argument("--cases", help="cases directory (default: ACGS_OPA_CASES or the OPA module cache)")
    p.add_argument("--opa", help="opa binary (default: ACGS_OPA, PATH, ~/.local/bin/opa)")
    p.add_argument("--evaluator", choices=("wasm", "plan"), default="wasm",
                   help="what evaluates each case: the bundle's Wasm (default) or its plan (also built "
                        "with `opa build -t plan`)")
    p.add_argument("--compile-only", action="store_true", help="only compile (warm the cache)")
    p.add_argument("--refresh-cache", action="store_true", help="rebuild bundles even when cached")
    p.add_argument("--max-listed", type=int, default=25, help="cases listed per group")
    p.add_argument("--max-diff-lines", type=int, default=12, help="diff lines shown per failure")
    p.add_argument("--no-diff", action="store_true", help="list failures without diffs")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        report, meta = run(args)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print_report(report, meta, args)
    if args.json:
        blob = json.dumps(summary_json(report, meta, args), indent=1, ensure_ascii=False)
        if args.json == "-":
            print(blob)
        else:
            Path(args.json).write_text(blob + "\n", encoding="utf-8")
    if args.compile_only:
        return 0
    rate = report.pass_rate
    if rate is not None and rate < args.threshold:
        return 1
    return 0
