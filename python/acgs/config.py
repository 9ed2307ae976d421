"""One configuration for every ACGS service: a TOML file plus ``ACGS_*`` environment variables.

Each service keeps its own frozen settings class (``PolicySettings``, ``EvolutionSettings``,
``AuditSettings``, ``SandboxSettings``, ...), with its environment variable names and parsers.
This module reads a TOML file whose tables are named after those sections and whose top-level
keys are the settings several services share (``data_dir``, ``log_level``, ``redis_url``...),
checks every key and value against the section's fields, and builds all the settings objects.

Precedence, lowest first: the settings class's default, the file's top-level key, the file's
section key, the ``ACGS_*`` variable, and finally what the command line passes. A bad key or
value stops the start with a :class:`ConfigError` naming the file, the key and the form it
expects.

    data_dir = "/var/lib/acgs"
    log_level = "info"

    [policy]
    port = 8004
    cache_size = 50000

    [audit]
    database_url = "postgresql://acgs@db/acgs"
"""

from __future__ import annotations

import dataclasses
import difflib
import os
import tomllib
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from acgs.errors import InvalidInputError

#: The variable naming the configuration file when ``--config`` is not given.
CONFIG_ENV = "ACGS_CONFIG"
#: Where every service keeps its files unless told otherwise (one directory for the product).
DEFAULT_DATA_DIR = Path(".acgs-data")


class ConfigError(InvalidInputError):
    """The configuration file or an ``ACGS_*`` variable is malformed; the message names the key
    and the expected form."""

    code = "invalid_config"


@dataclass(frozen=True, slots=True)
class Section:
    """One settings class as the configuration sees it."""

    name: str
    cls: type
    env_names: Mapping[str, str]
    parsers: Mapping[str, Callable[[str], Any]]

    @property
    def fields(self) -> dict[str, dataclasses.Field[Any]]:
        return {f.name: f for f in dataclasses.fields(self.cls)}

    def shared_fields(self) -> set[str]:
        """Fields whose variable has no service prefix (``ACGS_DATA_DIR``): the top-level keys."""
        prefix = f"ACGS_{self.name.upper()}_"
        # A section's own variable may also be its bare prefix (ACGS_AGENT_REGISTRY).
        return {name for name, var in self.env_names.items() if not var.startswith(prefix) and var != prefix[:-1]}

    def build(self, values: Mapping[str, Any]) -> Any:
        from_env = getattr(self.cls, "from_env", None)
        if from_env is not None:
            # With an empty environment, from_env is the class's own validation of ``values``.
            return from_env({}, **values)
        return self.cls(**values)


def _sections() -> list[Section]:
    """Every section, imported lazily so ``acgs.config`` stays cheap to import."""
    from acgs.services.audit import settings as audit
    from acgs.services.evolution import settings as evolution
    from acgs.services.policy import settings as policy
    from acgs.services.sandbox import settings as sandbox

    out = [
        Section("policy", policy.PolicySettings, policy.ENV_NAMES, policy._PARSERS),
        Section("evolution", evolution.EvolutionSettings, evolution.ENV_NAMES, evolution._PARSERS),
        Section("audit", audit.AuditSettings, audit.ENV_NAMES, audit._PARSERS),
        Section("sandbox", sandbox.SandboxSettings, sandbox.ENV_NAMES, sandbox._PARSERS),
    ]
    out.extend(_optional_sections())
    return out


def _optional_sections() -> list[Section]:
    """Sections of the cross-service layers (security, observability) when they are present."""
    found: list[Section] = []
    for name, module_name, cls_name in (
        ("security", "acgs.security.settings", "SecuritySettings"),
        ("observability", "acgs.services.common.observability", "ObservabilitySettings"),
        ("agent_registry", "acgs.registry.settings", "RegistrySettings"),
    ):
        try:
            module = __import__(module_name, fromlist=[cls_name])
        except ImportError:
            continue
        cls = getattr(module, cls_name, None)
        names = getattr(module, "ENV_NAMES", None)
        parsers = getattr(module, "_PARSERS", None) or getattr(module, "PARSERS", None)
        if cls is not None and names is not None and parsers is not None:
            found.append(Section(name, cls, names, parsers))
    return found


# -- checking one value against its field ---------------------------------------------------


def _kinds(hint: Any) -> tuple[set[type], bool]:
    """The plain types a field accepts and whether it is optional."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        kinds: set[type] = set()
        optional = False
        for arg in typing.get_args(hint):
            if arg is type(None):
                optional = True
            else:
                sub, _ = _kinds(arg)
                kinds |= sub
        return kinds, optional
    if origin in (tuple, list, frozenset, set):
        return {tuple}, False
    if isinstance(hint, type):
        return {hint}, False
    return {str}, False


def _describe(kinds: set[type], optional: bool) -> str:
    words = {
        bool: "true or false",
        int: "an integer",
        float: "a number",
        str: "a string",
        Path: "a path (string)",
        tuple: "a list of strings",
    }
    names = [words.get(k, k.__name__) for k in sorted(kinds, key=lambda k: k.__name__)]
    text = " or ".join(names)
    return f"{text} (or \"\" for none)" if optional else text


def _toml_type(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "a table"
    return type(value).__name__


def _as_text(value: Any, kinds: set[type], optional: bool) -> str | None:
    """The value in the form its ``ACGS_*`` variable would have, or None if its TOML type does
    not fit the field."""
    if isinstance(value, bool):
        return ("true" if value else "false") if bool in kinds else None
    if isinstance(value, int):
        return str(value) if kinds & {int, float} else None
    if isinstance(value, float):
        return repr(value) if float in kinds else None
    if isinstance(value, str):
        if value == "" and optional:
            return ""
        return value if kinds & {str, Path} else None
    if isinstance(value, list):
        if tuple in kinds and all(isinstance(v, str) and "," not in v for v in value):
            return ",".join(value)
        return None
    return None


def _check(section: Section, key: str, value: Any, where: str) -> Any:
    """``value`` from the file, checked and parsed by the same parser as its variable."""
    hints = typing.get_type_hints(section.cls)
    kinds, optional = _kinds(hints[key])
    text = _as_text(value, kinds, optional)
    if text is None:
        raise ConfigError(f"{where}: expected {_describe(kinds, optional)}, got {_toml_type(value)} {value!r}")
    if text == "" and optional:
        return None
    try:
        return section.parsers[key](text)
    except (ValueError, InvalidInputError) as exc:
        raise ConfigError(f"{where}: {value!r}: {exc}") from None


def _unknown(where: str, key: str, known: Iterable[str]) -> ConfigError:
    known = sorted(known)
    close = difflib.get_close_matches(key, known, n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    return ConfigError(f"{where}: unknown setting {key!r}{hint}; expected one of: {', '.join(known)}")


# -- the whole configuration ----------------------------------------------------------------


@dataclass(frozen=True)
class AcgsConfig:
    """Every service's settings, as one configuration built them."""

    sections: dict[str, Any]
    #: The file read, if any.
    source: Path | None = None
    #: ``section -> keys`` the file or the environment set (the rest are defaults).
    explicit: dict[str, frozenset[str]] = dataclasses.field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.sections[name]
        except KeyError:
            raise AttributeError(name) from None

    def is_set(self, section: str, key: str) -> bool:
        """Whether ``key`` of ``section`` came from the file or the environment."""
        return key in self.explicit.get(section, frozenset())

    def replace(self, section: str, **changes: Any) -> AcgsConfig:
        sections = dict(self.sections)
        sections[section] = dataclasses.replace(sections[section], **changes)
        explicit = dict(self.explicit)
        explicit[section] = explicit.get(section, frozenset()) | frozenset(changes)
        return AcgsConfig(sections, self.source, explicit)

    def public(self) -> dict[str, Any]:
        """JSON-ready values of every section, credentials masked where a section knows how."""
        out: dict[str, Any] = {}
        for name, settings in self.sections.items():
            if hasattr(settings, "public"):
                out[name] = settings.public()
            else:
                out[name] = {
                    f.name: _jsonable(getattr(settings, f.name)) for f in dataclasses.fields(settings)
                }
        return out


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return list(value)
    return value


def config_path(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Path | None:
    """The file to read: ``path`` if given, else ``$ACGS_CONFIG``, else none."""
    env = os.environ if environ is None else environ
    if path is not None:
        return Path(path)
    named = env.get(CONFIG_ENV)
    return Path(named) if named else None


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> AcgsConfig:
    """Reads the file (``path``, else ``$ACGS_CONFIG``, else none) and the environment, and
    builds every section. ``overrides`` (``section -> field -> value``) win over both."""
    env = os.environ if environ is None else environ
    source = config_path(path, env)
    document: dict[str, Any] = {}
    if source is not None:
        try:
            document = tomllib.loads(source.read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read configuration file {source}: {exc.strerror or exc}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    label = str(source) if source is not None else "configuration"
    sections = _sections()
    by_name = {s.name: s for s in sections}
    shared = set().union(*(s.shared_fields() for s in sections))

    top: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            if key not in by_name:
                raise _unknown(label, f"[{key}]", [f"[{n}]" for n in by_name])
            continue
        if key not in shared:
            raise _unknown(label, key, shared | {f"[{n}]" for n in by_name})
        top[key] = value

    overrides = overrides or {}
    for name in overrides:
        if name not in by_name:
            raise ConfigError(f"unknown section {name!r}")
    built: dict[str, Any] = {}
    explicit: dict[str, frozenset[str]] = {}
    for section in sections:
        fields = section.fields
        values: dict[str, Any] = {}
        if "data_dir" in fields:
            values["data_dir"] = DEFAULT_DATA_DIR
        for key, value in top.items():
            if key in fields:
                values[key] = _check(section, key, value, f"{label}: {key}")
        table = document.get(section.name, {})
        for key, value in table.items():
            if key not in fields:
                raise _unknown(f"{label}: [{section.name}]", key, fields)
            values[key] = _check(section, key, value, f"{label}: [{section.name}] {key}")
        set_keys = set(top) & set(fields) | set(table)
        for key, var in section.env_names.items():
            if var in env and key in fields:
                text = env[var].strip()
                try:
                    values[key] = section.parsers[key](text)
                except (ValueError, InvalidInputError) as exc:
                    raise ConfigError(f"{var}={env[var]!r}: {exc}") from None
                set_keys.add(key)
        for key, value in overrides.get(section.name, {}).items():
            if key not in fields:
                raise _unknown(section.name, key, fields)
            if value is not None:
                values[key] = value
                set_keys.add(key)
        try:
            built[section.name] = section.build(values)
        except (ValueError, TypeError, InvalidInputError) as exc:
            raise ConfigError(f"{label}: [{section.name}]: {exc}") from None
        explicit[section.name] = frozenset(set_keys)
    return AcgsConfig(built, source, explicit)


def template() -> str:
    """A commented TOML file listing every section and key with its default and variable."""
    lines = [
        "# ACGS configuration. Every key is optional; the values shown are the defaults.",
        "# Each key can also be set by the ACGS_* variable named beside it, which wins over this file.",
        "",
    ]
    sections = _sections()
    instances = {
        s.name: s.build({"data_dir": DEFAULT_DATA_DIR} if "data_dir" in s.fields else {}) for s in sections
    }
    shared: dict[str, str] = {}
    for section in sections:
        for key in sorted(section.shared_fields()):
            if key not in shared:
                value = _toml_value(getattr(instances[section.name], key))
                shared[key] = f"# {key} = {value}  # {section.env_names[key]}"
    lines.extend(line for _, line in sorted(shared.items()))
    for section in sections:
        lines.append("")
        lines.append(f"[{section.name}]")
        instance = instances[section.name]
        for f in dataclasses.fields(section.cls):
            if f.name in section.shared_fields():
                continue
            var = section.env_names.get(f.name, "")
            lines.append(f"# {f.name} = {_toml_value(getattr(instance, f.name))}  # {var}")
    return "\n".join(lines) + "\n"


def _toml_value(value: Any) -> str:
    if value is None:
        return '""'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(f'"{v}"' for v in value) + "]"
    text = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{text}"'
