"""``acgs keys create|list|revoke``: API keys in the key store the services read
(``ACGS_AUTH_KEY_STORE``, or SQLite under ``ACGS_DATA_DIR``)."""

from __future__ import annotations

import asyncio
import json

import click

from acgs.security.keys import ApiKeyError, KeyStore, create_key, open_key_store, revoke_key
from acgs.security.principal import ROLES
from acgs.security.settings import SecuritySettings


def _store(store_url: str | None) -> KeyStore:
    """``--store``, else the key store of the configuration (``acgs --config FILE`` or
    ``ACGS_CONFIG``, then ``ACGS_*`` variables), else SQLite under the data directory."""
    if store_url:
        return open_key_store(store_url)
    config_file = click.get_current_context().find_root().params.get("config_file")
    try:
        from acgs.config import load_config

        settings: SecuritySettings = load_config(config_file).security
    except ImportError:
        settings = SecuritySettings.from_env()
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None
    return open_key_store(settings.resolved_key_store())


_STORE = click.option(
    "--store",
    "store_url",
    metavar="URL",
    help="sqlite:///path or postgresql://... (default: ACGS_AUTH_KEY_STORE, else keys.sqlite3 under ACGS_DATA_DIR)",
)


@click.group("keys")
def keys() -> None:
    """Manage the API keys the services accept."""


@keys.command("create")
@click.option("--name", required=True, help="The principal the key stands for (an agent's or a person's name).")
@click.option(
    "--role",
    "roles",
    multiple=True,
    required=True,
    type=click.Choice(ROLES),
    help="A role of the key; repeat for several.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the key and its token as JSON.")
@_STORE
def create(name: str, roles: tuple[str, ...], as_json: bool, store_url: str | None) -> None:
    """Create a key and print its token: it is shown this once and stored only as a hash."""
    try:
        key, token = asyncio.run(create_key(_store(store_url), name, roles))
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    if as_json:
        click.echo(json.dumps({**key.public(), "token": token}))
        return
    click.echo(f"created key {key.id} for {key.name} (roles: {', '.join(sorted(key.roles))})")
    click.echo("token (shown once, store it now):")
    click.echo(token)


@keys.command("list")
@click.option("--all", "show_all", is_flag=True, help="Include revoked keys.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@_STORE
def list_keys(show_all: bool, as_json: bool, store_url: str | None) -> None:
    """List keys (never their tokens)."""
    try:
        found = asyncio.run(_store(store_url).all())
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    shown = [k for k in found if show_all or k.active]
    if as_json:
        for key in shown:
            click.echo(json.dumps(key.public()))
        return
    if not shown:
        click.echo("no keys")
        return
    rows = [("ID", "NAME", "ROLES", "CREATED", "REVOKED")]
    for key in shown:
        p = key.public()
        rows.append((p["id"], p["name"], ",".join(p["roles"]), p["created_at"], p["revoked_at"] or "-"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


@keys.command("revoke")
@click.argument("key_id")
@_STORE
def revoke(key_id: str, store_url: str | None) -> None:
    """Revoke a key by id. Services refuse it within ACGS_AUTH_KEY_REFRESH seconds."""
    try:
        key = asyncio.run(revoke_key(_store(store_url), key_id))
    except ApiKeyError as exc:
        raise click.ClickException(exc.message) from None
    click.echo(f"revoked key {key.id} ({key.name})")
