"""``acgs agents add|list|show|update|remove``: the agent registry the services read
(``ACGS_AGENT_REGISTRY``, or ``agents.sqlite3`` under ``ACGS_DATA_DIR``)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import click

from acgs.errors import AcgsError
from acgs.registry.records import UNSET, AgentRecord, AgentUpdate, loads_exact, new_agent, trust_text
from acgs.registry.settings import RegistrySettings
from acgs.registry.store import AgentRegistry, open_registry
from acgs.security.cli import admin_command

T = TypeVar("T")


def _url(store_url: str | None) -> str:
    """``--store``, else the registry of the configuration (``acgs --config FILE`` or
    ``ACGS_CONFIG``, then ``ACGS_*`` variables), else SQLite under the data directory."""
    if store_url:
        return store_url
    root = click.get_current_context().find_root()
    config_file = root.params.get("config_file")
    try:
        from acgs.config import load_config

        settings: RegistrySettings = load_config(config_file).agent_registry
    except (ImportError, AttributeError):
        settings = RegistrySettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return settings.resolved_url()


def _run(store_url: str | None, work: Callable[[AgentRegistry], Awaitable[T]]) -> T:
    async def go() -> T:
        store = open_registry(_url(store_url))
        try:
            return await work(store)
        finally:
            await store.close()

    try:
        return asyncio.run(go())
    except AcgsError as exc:
        raise click.ClickException(exc.message) from None


def _attributes(pairs: tuple[str, ...], json_pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for option, items, as_json in (("--attr", pairs, False), ("--attr-json", json_pairs, True)):
        for item in items:
            key, sep, value = item.partition("=")
            if not sep or not key:
                raise click.BadParameter(f"{item!r}: write KEY=VALUE", param_hint=option)
            if as_json:
                try:
                    out[key] = loads_exact(value)
                except ValueError as exc:
                    raise click.BadParameter(f"{key}: not JSON: {exc}", param_hint=option) from None
            else:
                out[key] = value
    return out


def _show(record: AgentRecord, as_json: bool) -> None:
    if as_json:
        click.echo(record.to_json())
        return
    attrs = record.attributes_json if record.attributes else "-"
    state = " (disabled)" if record.disabled else ""
    click.echo(
        f"{record.agent_id}{state}: trust {trust_text(record.trust_level)}, tier {record.tier or '-'}, "
        f"owner {record.owner or '-'}, attributes {attrs}"
    )


_STORE = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="sqlite:///path or postgresql://... (default: ACGS_AGENT_REGISTRY, else agents.sqlite3 under ACGS_DATA_DIR)",
)
_JSON = click.option("--json", "as_json", is_flag=True, help="Print the record as JSON (exact numbers).")
_ATTR = click.option(
    "--attr", "attrs", multiple=True, metavar="KEY=VALUE", help="An attribute with a string value; repeat for several."
)
_ATTR_JSON = click.option(
    "--attr-json",
    "attrs_json",
    multiple=True,
    metavar="KEY=JSON",
    help="An attribute with any JSON value (numbers stay exact): --attr-json max_cost=12.50",
)


@click.group("agents")
def agents() -> None:
    """Manage the agent registry: who each agent is and what ACGS may trust it with."""


@agents.command("add")
@admin_command
@click.argument("agent_id")
@click.option("--trust", "trust", required=True, metavar="DECIMAL", help="Trust level, a plain decimal in [0, 1] (e.g. 0.8).")
@click.option("--tier", help="Tier or class of the agent.")
@click.option("--owner", help="Who answers for the agent (a person or team).")
@_ATTR
@_ATTR_JSON
@click.option("--disabled", is_flag=True, help="Register the agent disabled (it gets no trust until enabled).")
@_JSON
@_STORE
def add(
    agent_id: str,
    trust: str,
    tier: str | None,
    owner: str | None,
    attrs: tuple[str, ...],
    attrs_json: tuple[str, ...],
    disabled: bool,
    as_json: bool,
    store_url: str | None,
) -> None:
    """Register AGENT_ID with its trust level and facts."""
    try:
        record = new_agent(
            agent_id, trust, tier=tier, owner=owner, attributes=_attributes(attrs, attrs_json), disabled=disabled
        )
    except AcgsError as exc:
        raise click.UsageError(exc.message) from None
    added = _run(store_url, lambda store: store.add(record))
    if as_json:
        _show(added, True)
    else:
        click.echo(f"added agent {added.agent_id}")


@agents.command("list")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_STORE
def list_agents(as_json: bool, store_url: str | None) -> None:
    """List registered agents, ordered by id."""
    found = _run(store_url, lambda store: store.list())
    if as_json:
        for record in found:
            click.echo(record.to_json())
        return
    if not found:
        click.echo("no agents")
        return
    rows = [("ID", "TRUST", "TIER", "OWNER", "DISABLED", "ATTRIBUTES")]
    for r in found:
        rows.append(
            (r.agent_id, trust_text(r.trust_level), r.tier or "-", r.owner or "-", "yes" if r.disabled else "no",
             r.attributes_json if r.attributes else "-")
        )  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@agents.command("show")
@click.argument("agent_id")
@_JSON
@_STORE
def show(agent_id: str, as_json: bool, store_url: str | None) -> None:
    """Print one agent's record."""
    record = _run(store_url, lambda store: store.get(agent_id))
    if record is None:
        raise click.ClickException(f"no agent {agent_id!r} is registered")
    _show(record, as_json)


@agents.command("update")
@admin_command
@click.argument("agent_id")
@click.option("--trust", "trust", metavar="DECIMAL", help="New trust level, a plain decimal in [0, 1].")
@click.option("--tier", help="New tier or class.")
@click.option("--clear-tier", is_flag=True, help="Remove the tier.")
@click.option("--owner", help="New owner.")
@click.option("--clear-owner", is_flag=True, help="Remove the owner.")
@_ATTR
@_ATTR_JSON
@click.option("--unset-attr", "unset_attrs", multiple=True, metavar="KEY", help="Remove an attribute; repeat for several.")
@click.option("--clear-attrs", is_flag=True, help="Remove every attribute (before --attr/--attr-json apply).")
@click.option("--disable/--enable", "disabled", default=None, help="Disable the agent, or enable it again.")
@_JSON
@_STORE
def update(
    agent_id: str,
    trust: str | None,
    tier: str | None,
    clear_tier: bool,
    owner: str | None,
    clear_owner: bool,
    attrs: tuple[str, ...],
    attrs_json: tuple[str, ...],
    unset_attrs: tuple[str, ...],
    clear_attrs: bool,
    disabled: bool | None,
    as_json: bool,
    store_url: str | None,
) -> None:
    """Change some fields of AGENT_ID; the others stay as they are."""
    if tier is not None and clear_tier:
        raise click.UsageError("give --tier or --clear-tier, not both")
    if owner is not None and clear_owner:
        raise click.UsageError("give --owner or --clear-owner, not both")
    given = _attributes(attrs, attrs_json)
    changes: dict[str, Any] = {
        "trust_level": UNSET if trust is None else trust,
        "tier": None if clear_tier else (UNSET if tier is None else tier),
        "owner": None if clear_owner else (UNSET if owner is None else owner),
        "disabled": UNSET if disabled is None else disabled,
    }
    if clear_attrs:
        changes["attributes"] = given
    elif given or unset_attrs:
        overlap = sorted(set(given) & set(unset_attrs))
        if overlap:
            raise click.UsageError(f"attribute(s) both set and unset: {', '.join(overlap)}")
        # A JSON merge patch (RFC 7396): an object given for a key merges into the one there.
        changes["attributes_patch"] = {**given, **dict.fromkeys(unset_attrs)}
    try:
        change = AgentUpdate.of(**changes)
    except AcgsError as exc:
        raise click.UsageError(exc.message) from None
    if change.empty:
        raise click.UsageError("nothing to change: give --trust, --tier, --owner, --attr, --disable... (see --help)")
    updated = _run(store_url, lambda store: store.update(agent_id, change))
    if as_json:
        _show(updated, True)
    else:
        click.echo(f"updated agent {updated.agent_id}")


@agents.command("remove")
@admin_command
@click.argument("agent_id")
@_STORE
def remove(agent_id: str, store_url: str | None) -> None:
    """Remove AGENT_ID from the registry (disable it instead to keep its record)."""
    removed = _run(store_url, lambda store: store.remove(agent_id))
    click.echo(f"removed agent {removed.agent_id}")
