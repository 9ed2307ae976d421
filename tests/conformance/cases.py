"""Locating, loading and planning OPA's conformance cases."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import OPA_VERSION, regoterm, yamlcore

OPA_MODULE = f"github.com/open-policy-agent/opa@v{OPA_VERSION}"
CASES_SUBDIR = Path("v1/test/cases/testdata/v1")
EXCEPTIONS_SUBDIR = Path("internal/wasm/sdk/test/e2e/exceptions.yaml")

# The package and rule a non-entrypoint query gets wrapped in (see _wrapper).
WRAPPER_PACKAGE = "acgs_conformance_query"
WRAPPER_RULE = "bindings"

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
_DIRECT_QUERY = re.compile(rf"^\s*data((?:\.{_IDENT})+)\s*=\s*({_IDENT})\s*$")
_NOT_VARS = {"input", "data", "true", "false", "null", "set"}


class SetupError(RuntimeError):
    """The runner cannot find something it needs (cases, opa binary)."""


def _gomodcache() -> Path:
    go = shutil.which("go")
    if go:
        try:
            out = subprocess.run(
                [go, "env", "GOMODCACHE"], capture_output=True, text=True, timeout=60, check=True
            ).stdout.strip()
            if out:
                return Path(out)
        except (OSError, subprocess.SubprocessError):
            pass
    gopath = os.environ.get("GOPATH")
    if gopath:
        return Path(gopath.split(os.pathsep)[0]) / "pkg" / "mod"
    return Path.home() / "go" / "pkg" / "mod"


def cases_dir() -> Path:
    override = os.environ.get("ACGS_OPA_CASES")
    if override:
        path = Path(override).expanduser()
        if not path.is_dir():
            raise SetupError(f"ACGS_OPA_CASES={override} is not a directory")
        return path
    path = _gomodcache() / OPA_MODULE / CASES_SUBDIR
    if not path.is_dir():
        raise SetupError(
            f"OPA conformance cases not found at {path}; run "
            f"`go install github.com/open-policy-agent/opa@v{OPA_VERSION}` "
            "or set ACGS_OPA_CASES"
        )
    return path


def exceptions_file(cases: Path) -> Path | None:
    override = os.environ.get("ACGS_OPA_EXCEPTIONS")
    if override:
        return Path(override).expanduser()
    # The cases live five levels below the OPA module root.
    for parent in cases.resolve().parents:
        candidate = parent / EXCEPTIONS_SUBDIR
        if candidate.is_file():
            return candidate
    candidate = _gomodcache() / OPA_MODULE / EXCEPTIONS_SUBDIR
    return candidate if candidate.is_file() else None


@dataclass
class Exceptions:
    """OPA's list of cases its own Wasm runtime is known not to pass."""

    source: Path | None
    exact: dict[str, str] = field(default_factory=dict)
    globs: list[tuple[re.Pattern[str], str]] = field(default_factory=list)

    def reason(self, note: str) -> str | None:
        if note in self.exact:
            return self.exact[note]
        for pattern, reason in self.globs:
            if pattern.fullmatch(note):
                return reason
        return None

    def __len__(self) -> int:
        return len(self.exact) + len(self.globs)


def _glob_to_regex(pattern: str) -> re.Pattern[str]:
    # gobwas/glob with '/' as separator: '*' stays within a segment, '**'
    # crosses segments.
    out = []
    i = 0
    while i < len(pattern):
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return re.compile("".join(out))


def load_exceptions(path: Path | None) -> Exceptions:
    exc = Exceptions(source=path)
    if path is None:
        return exc
    raw = yamlcore.load(path.read_text(encoding="utf-8")) or {}
    for note, reason in raw.items():
        if "*" in note:
            exc.globs.append((_glob_to_regex(note), str(reason)))
        else:
            exc.exact[note] = str(reason)
    return exc


@dataclass(frozen=True)
class Plan:
    """How one case is compiled: the modules, data and entrypoint."""

    kind: str  # "direct" (query is data.<path> = <var>) or "wrapper"
    modules: tuple[str, ...]
    data_json: str | None
    entrypoint: str
    # direct: the query variable the rule's value binds to.
    # wrapper: the variables each binding object carries.
    variables: tuple[str, ...]
    # For a direct plan: the wrapper to fall back to when the path is not a
    # rule (OPA's build refuses such entrypoints; its Wasm runner, which
    # compiles the query itself, does not).
    fallback: "Plan | None" = None


@dataclass
class Case:
    note: str
    file: str  # relative to the cases directory
    index: int  # position within its file
    raw: dict[str, Any]
    skip_reason: str | None = None
    permanent_skip: bool = False
    plan: Plan | None = None
    input_json: str | None = None

    @property
    def topic(self) -> str:
        return self.file.split("/", 1)[0]

    @property
    def query(self) -> str:
        return str(self.raw.get("query", ""))

    @property
    def want_defined(self) -> bool | None:
        return self.raw.get("want_defined")

    @property
    def want_result(self) -> list[dict[str, Any]] | None:
        return self.raw.get("want_result")

    @property
    def want_error_code(self) -> str | None:
        return self.raw.get("want_error_code")

    @property
    def want_error(self) -> str | None:
        return self.raw.get("want_error")

    @property
    def strict_error(self) -> bool:
        return bool(self.raw.get("strict_error"))

    @property
    def sort_bindings(self) -> bool:
        return bool(self.raw.get("sort_bindings"))


def load_cases(root: Path) -> list[Case]:
    cases: list[Case] = []
    for path in sorted(root.rglob("*.yaml")):
        doc = yamlcore.load(path.read_text(encoding="utf-8")) or {}
        rel = path.relative_to(root).as_posix()
        for i, raw in enumerate(doc.get("cases") or []):
            cases.append(Case(note=str(raw.get("note", f"{rel}#{i}")), file=rel, index=i, raw=raw))
    # OPA runs cases sorted by note.
    cases.sort(key=lambda c: c.note)
    return cases


def _wrapper(query: str, variables: tuple[str, ...], modules: tuple[str, ...],
             data_json: str | None) -> Plan:
    """Wraps an arbitrary query in a rule collecting its binding objects.

    OPA's Wasm runner compiles the query itself and gets the set of binding
    rows; a partial set rule whose elements are the rows has the same value.
    """
    fields = ", ".join(f"{yamlcore.json_string(v)}: {v}" for v in variables)
    body = "\n".join("\t" + line for line in query.strip().splitlines())
    source = (
        f"package {WRAPPER_PACKAGE}\n\n"
        f"{WRAPPER_RULE} contains {{{fields}}} if {{\n{body}\n}}\n"
    )
    return Plan(
        kind="wrapper",
        modules=modules + (source,),
        data_json=data_json,
        entrypoint=f"{WRAPPER_PACKAGE}/{WRAPPER_RULE}",
        variables=variables,
    )


def _input_json(case: Case) -> tuple[str | None, str | None]:
    """Returns (input JSON text, skip reason)."""
    raw = case.raw
    if raw.get("input_term") is not None:
        term = str(raw["input_term"])
        try:
            value = regoterm.parse(term)
        except regoterm.RegoParseError as exc:
            return None, f"input_term is not a ground Rego value ({exc})"
        try:
            plain = regoterm.to_plain_json(value)
        except ValueError:
            # Sets and non-string keys: ACGS's host passes input to the policy's own value
            # parser, which reads Rego syntax, so the term goes in as written.
            return regoterm.render(value), None
        return yamlcore.to_json(plain), None
    if raw.get("input") is not None:
        return yamlcore.to_json(raw["input"]), None
    return None, None


def plan_case(case: Case, exceptions: Exceptions) -> None:
    reason = exceptions.reason(case.note)
    if reason is not None:
        case.skip_reason = f"OPA's Wasm exceptions list: {reason}"
        case.permanent_skip = True
        return

    unknown = set(case.raw) - KNOWN_FIELDS
    if unknown:
        case.skip_reason = f"case uses fields this runner does not handle: {sorted(unknown)}"
        return
    if case.raw.get("env"):
        case.skip_reason = "case sets environment variables"
        return
    if case.raw.get("experimental_keywords"):
        case.skip_reason = "case needs experimental keywords"
        return

    case.input_json, reason = _input_json(case)
    if reason is not None:
        case.skip_reason = reason
        return

    modules = tuple(str(m) for m in case.raw.get("modules") or ())
    data = case.raw.get("data")
    data_json = yamlcore.to_json(data) if data is not None else None

    want = case.want_result
    variables: tuple[str, ...] = ()
    if want:
        variables = tuple(sorted({k for row in want for k in row}))
    wrapped = _wrapper(case.query, variables, modules, data_json)

    m = _DIRECT_QUERY.match(case.query)
    if m and m.group(2) not in _NOT_VARS and (not want or variables == (m.group(2),)):
        path = m.group(1)[1:].replace(".", "/")
        case.plan = Plan(
            kind="direct",
            modules=modules,
            data_json=data_json,
            entrypoint=path,
            variables=(m.group(2),),
            fallback=wrapped,
        )
    else:
        case.plan = wrapped


KNOWN_FIELDS = {
    "note", "query", "modules", "data", "input", "input_term", "want_defined",
    "want_result", "want_error_code", "want_error", "sort_bindings",
    "ignore_generated_vars", "strict_error", "experimental_keywords", "env",
}
